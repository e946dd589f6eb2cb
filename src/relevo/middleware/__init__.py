"""Middlewares: behaviour around publish, handling and settlement, one behaviour per file.

`base.py` is the seam (the `Middleware` class and what its hooks see), `chain.py`
composes a list of them once per consumer and per queue, `dead_letter.py` and the
retry policy (`retry.py`) are middlewares of the seam like any an application adds, and
`entries.py` lets an entry kind bring one (a metrics or tracing entry).
"""

from relevo.middleware.base import ConsumerScope, Middleware, Settlement

__all__ = ["ConsumerScope", "Middleware", "Settlement"]
