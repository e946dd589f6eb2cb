"""The web dashboard: overview, queues, dead letters, delayed messages, consumers.

`create_app(app)` returns an ASGI application to mount; `relevo dashboard PATH` serves
it. Needs the `dashboard` extra (`pip install 'relevo[dashboard]'`): Starlette, Jinja2,
python-multipart and uvicorn. Nothing else in relevo imports this package.
"""

from relevo.dashboard.web import create_app

__all__ = ["create_app"]
