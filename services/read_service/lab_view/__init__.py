"""The live view for learners: /lab/ draws the pipeline as it runs (CONTRACT.md, "The live view").

One page (a template, a stylesheet, a script: static files, no build step) that polls /lab/api/pipeline,
which this app assembles from the other processes' /metrics pages, the broker's queue depths and the read
database. Only read-service's gunicorn imports its views; the projector, which shares these settings, never
does.
"""
