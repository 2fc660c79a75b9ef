"""The development kit: what the test tiers, the benchmark (bench/), the laboratory (lab/) and the
observability scripts (observability/) share to start, drive and watch a system on this machine.

- processes: free_port, one process launcher (ServiceProcess) and its log lines
- system_processes: the system's four processes launched as a user launches them
- polling: one poller (poll, and eventually that fails when the time is up)
- metrics: one reader of a /metrics page, on prometheus_client's own parser
- api_client: the REST calls a client makes to both APIs
- private_rabbitmq: a RabbitMQ node of its own, to stop and start
- code_path: which of the project's modules a unit of work runs (a deposit's way through the system)
- replication: the logical replication of `events`, reset for a run that empties the databases

Installed with the services (`pip install -e '.[dev]'`), so `import devkit` works from any directory.
"""
