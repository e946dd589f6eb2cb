"""relevo: asynchronous message processing declared in YAML.

    app = relevo.load("app.yaml")
    async with app:
        await app.publish("app.queue:tasks", {"id": "task-123"})

Publish-only (a web app, a script: no consumer starts): `await app.open(start=False)`,
then `await app.publish(...)`, and `await app.close()` at the end.

Inside a handler: `relevo.message()`, `await relevo.publish(...)`, `relevo.publish_sync(...)`,
`raise relevo.Retry("30s")`, `raise relevo.Reject("reason")`.
"""

from relevo import errors
from relevo.app import App, load
from relevo.context import message, publish, publish_sync
from relevo.control import Reject, Retry
from relevo.message import Delivery

__all__ = [
    "App", "Delivery", "Reject", "Retry", "errors", "load", "message", "publish", "publish_sync",
]
__version__ = "0.1.0"
