"""Middlewares: behaviour around publish, handling and settlement, one behaviour per file.

`base.py` is the seam (the `Middleware` class and what its hooks see), `chain.py`
composes a list of them once per consumer and per queue, `dead_letter.py` and the
retry policy are middlewares of the seam like any an application adds.
"""

from relevo.middleware.base import ConsumerScope, Middleware, Settlement

__all__ = ["ConsumerScope", "Middleware", "Settlement"]
