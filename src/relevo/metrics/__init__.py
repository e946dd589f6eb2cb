"""Prometheus metrics: figures kept in plain Python on the hot path, exposed at scrape time.

`settings.py` is the `metrics.prometheus` entry's config model (no prometheus import),
`figures.py` the counters and histograms the middleware updates per message,
`middleware.py` the middleware that updates them, `sources.py` what a scrape reads of
an application, `install.py` the wiring into one, `children.py` the parent's sum of its
children's figures (`--processes N`), `exposition.py` turns figures into Prometheus
metric families, `endpoint.py` serves /metrics. Only the last two import
prometheus-client, and only an application with a `metrics.prometheus` entry loads them.
"""
