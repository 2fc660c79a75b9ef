"""The outbox relay: publishes committed events from the `events` table to RabbitMQ, then records how far.

- `session`: the relay's own PostgreSQL connection (leadership lock, LISTEN, reads and records all on it).
- `leadership`: one relay publishes at a time, the others stand by (a session-level advisory lock).
- `store`: the SQL of the outbox: the events still to publish, the high-water mark and the gaps below it,
  backlog and WAL retention.
- `relay`: the loop: lead, drain in batches with publisher confirms, wait for the next commit.

Run it with `python -m write_service relay`.
"""
