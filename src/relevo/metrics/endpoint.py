"""The `metrics.prometheus` entry at run time: prometheus-client's HTTP server on `listen`.

The server answers in its own thread; each scrape hops onto the application's event
loop once to take a snapshot (figures, queue counts, entry states), so the figures are
only ever touched on the loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from relevo.errors import RelevoError
from relevo.metrics.exposition import registry_for
from relevo.metrics.figures import Snapshot
from relevo.metrics.settings import split_listen

SCRAPE_TIMEOUT_S = 10.0
"""A scrape that cannot get a snapshot from the loop within this fails (HTTP 500)."""


class PrometheusEndpoint:
    """Serves `collect()`'s snapshot in the Prometheus text format at /metrics."""

    def __init__(self, entry_id: str, listen: str, collect: Callable[[], Awaitable[Snapshot]]):
        self.entry_id = entry_id
        self.listen = listen
        self.collect = collect
        self.registry = registry_for(self._snapshot_from_server_thread)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (useful with `listen: 127.0.0.1:0`)."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    async def start(self) -> None:
        host, port = split_listen(self.listen)
        self._loop = asyncio.get_running_loop()
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise RelevoError(f"{self.entry_id}: cannot listen on {self.listen}: {exc}") from exc

    async def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        # shutdown() waits for the serving thread, which may itself wait on this loop
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)

    def _snapshot_from_server_thread(self) -> Snapshot:
        loop = self._loop
        if loop is None or loop.is_closed():
            return {}
        future = asyncio.run_coroutine_threadsafe(_call(self.collect), loop)
        return future.result(SCRAPE_TIMEOUT_S)


async def _call(collect: Callable[[], Awaitable[Snapshot]]) -> Snapshot:
    return await collect()
