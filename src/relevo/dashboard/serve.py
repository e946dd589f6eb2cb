"""`relevo dashboard PATH`: open the application's queues (no consumer starts) and serve."""

from __future__ import annotations

import logging
import os

import uvicorn

from relevo.app import App
from relevo.dashboard.web import TOKEN_ENV, create_app

log = logging.getLogger("relevo.dashboard")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (which means 127.0.0.1)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


async def serve(app: App, host: str, port: int, read_only: bool) -> None:
    web = create_app(app, read_only=read_only)  # its lifespan opens and closes the app
    config = uvicorn.Config(web, host=host, port=port, log_level="warning",
                            lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    guard = "token required" if _token_set() else f"no token ({TOKEN_ENV} is unset)"
    log.info("dashboard on http://%s:%d/ (%s%s)", host, port, guard,
             ", read-only" if read_only else "")
    await server.serve()


def _token_set() -> bool:
    return bool(os.environ.get(TOKEN_ENV))
