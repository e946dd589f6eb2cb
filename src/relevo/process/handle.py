"""The parent's handle on one child process: spawn it, read its channel, stop or kill it."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from relevo.drivers.catalog import DRIVER_KINDS
from relevo.functions.catalog import FUNCTION_KINDS
from relevo.process import channel
from relevo.process.child import child_entry
from relevo.registry import Registry

log = logging.getLogger("relevo.process")


_FORKSERVER = multiprocessing.get_context("forkserver")
"""Children fork from a server that has relevo and the app's drivers and functions
imported already: a child is ready in the time its app takes to start, not the second
a fresh interpreter needs for imports, and it shares nothing with the parent's event
loop or threads."""


def preload(registry: Registry) -> None:
    """Name what the fork server imports once for every child. Call before spawning."""
    modules = {"relevo.process.child"}
    for entry in registry:
        kind = DRIVER_KINDS.get(entry.kind) or FUNCTION_KINDS.get(entry.kind)
        if kind is not None:
            modules.add(kind.factory.partition(":")[0])
    _FORKSERVER.set_forkserver_preload(sorted(modules))


class ChildProcess:
    def __init__(self, slot: int, process: BaseProcess, control: channel.Sender) -> None:
        loop = asyncio.get_running_loop()
        self.slot = slot
        self.process = process
        self.pid = process.pid
        self.control = control
        self.ready: asyncio.Future[bool] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.exited.add_done_callback(lambda _: self._settle_ready(False))
        loop.add_reader(process.sentinel, self._on_exit)
        self.started_at = loop.time()
        self.processed = 0
        self.rss = 0
        self.error: str | None = None  # its start-up error, as it reported it
        self.retiring = False  # told to stop: its exit is no crash
        self.on_stats: Callable[[ChildProcess], None] | None = None
        self.on_metrics: Callable[[ChildProcess, dict[str, Any]], None] | None = None
        self.reading: asyncio.Task[None] | None = None
        self.checked = False  # the parent has seen its first stats
        self.memory_exempt = False  # over the memory limit from the start: not recycled for it

    @classmethod
    async def spawn(
        cls, path: str, slot: int, log_level: str, log_format: str = "text"
    ) -> ChildProcess:
        control_r, control_w = _FORKSERVER.Pipe(duplex=False)
        report_r, report_w = _FORKSERVER.Pipe(duplex=False)
        process = _FORKSERVER.Process(
            target=child_entry, name=f"relevo-child-{slot}",
            args=(path, slot, control_r, report_w, log_level, log_format),
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, process.start)  # blocks while it forks
        finally:
            control_r.close()  # the child's ends: with these open here, no end of file there
            report_w.close()
        child = cls(slot, process, await channel.Sender.open(_take_fd(control_w)))
        reader = await channel.open_reader(_take_fd(report_r))
        child.reading = loop.create_task(channel.dispatch(reader, {
            channel.READY: child._on_ready,
            channel.FAILED: child._on_failed,
            channel.STATS: child._on_stats,
            channel.RELOADED: child._on_reloaded,
        }, str(child)))
        return child

    def __str__(self) -> str:
        return f"child {self.slot} (pid {self.pid})"

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def uptime_s(self) -> float:
        return asyncio.get_running_loop().time() - self.started_at

    async def wait_ready(self) -> bool:
        """True once the child reports ready; False if it exits first."""
        return await asyncio.shield(self.ready)

    def request_stop(self) -> None:
        """Stop gracefully: the child stops its app as on SIGTERM."""
        self.retiring = True
        if not self.control.send(channel.STOP) and self.alive:
            self.process.terminate()

    def request_reload(self) -> None:
        self.control.send(channel.RELOAD)

    def kill(self) -> None:
        if self.alive:
            self.process.kill()

    def exit_reason(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        self.process.join()
        if not self.exited.done():
            self.exited.set_result(self.process.exitcode or 0)
        self.control.close()

    def _settle_ready(self, value: bool) -> None:
        if not self.ready.done():
            self.ready.set_result(value)

    def _on_ready(self, message: channel.Message) -> None:
        log.info("%s ready", self)
        self._settle_ready(True)

    def _on_failed(self, message: channel.Message) -> None:
        self.error = str(message.get("error"))

    def _on_stats(self, message: channel.Message) -> None:
        self.processed = int(message.get("processed", 0))
        self.rss = int(message.get("rss", 0))
        if self.on_metrics is not None and isinstance(message.get("metrics"), dict):
            self.on_metrics(self, message["metrics"])
        if self.on_stats is not None:
            self.on_stats(self)

    def _on_reloaded(self, message: channel.Message) -> None:
        log.info("%s reloaded: added %s, removed %s, restarted %s", self,
                 message.get("added"), message.get("removed"), message.get("restarted"))


def _take_fd(connection: Connection) -> int:
    """A raw descriptor of our own for the channel; the Connection wrapper goes."""
    fd = os.dup(connection.fileno())
    connection.close()
    return fd
