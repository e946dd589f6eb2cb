"""Entry kinds that bring a middleware (a metrics or tracing entry, say).

A kind registers a factory here; when an app builds, every entry of a registered kind
adds the middleware its factory makes to the app's chain, after those passed to
`App(middlewares=...)`, in the order the entries are declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relevo.middleware.base import Middleware

EntryMiddlewareFactory = Callable[[str, Any], Middleware]
"""(entry ID, the entry's validated settings) -> the middleware it contributes."""

ENTRY_MIDDLEWARES: dict[str, EntryMiddlewareFactory] = {}
"""Entry kind -> factory. Register at import time of the kind's module."""
