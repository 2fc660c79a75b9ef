"""The benchmark harness behind `make bench`: the whole system started on dedicated databases, five scenarios
measured from the read database's own timestamps, and results written to bench/results/.

`python -m bench --help` lists the options; bench/README text is in the top-level README's Benchmarks section.
"""
