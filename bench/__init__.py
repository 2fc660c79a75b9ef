"""The benchmark harness behind `make bench`: the whole system started on dedicated databases, five scenarios
measured from the read database's own timestamps, and results written to bench/results/.

`python -m bench --help` lists the options (`make bench BENCH_ARGS="--full"` passes them through).
"""
