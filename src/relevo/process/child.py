"""One worker process: run the application, report to the parent, stop when told,
when signalled, or when the parent is gone.

Started by the parent (handle.py) with the two ends of its channel. Exit codes:
0 stopped gracefully, 1 a stop timed out, 2 the application failed to start (the
error went to the parent on the channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from relevo.app import App, load
from relevo.errors import ConfigError, RelevoError, StopTimeout
from relevo.logs.formats import configure
from relevo.process import channel
from relevo.process.deathsig import ask_signal_on_parent_death

log = logging.getLogger("relevo.process")

STATS_EVERY_S = 0.5
EXIT_OK, EXIT_STOP_TIMEOUT, EXIT_START_FAILED = 0, 1, 2


def rss_bytes() -> int:
    """Resident memory now (Linux), else the peak the OS reports."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Child:
    def __init__(self, path: str, slot: int, report: channel.Sender) -> None:
        self.path = path
        self.slot = slot
        self.report = report
        self.stop = asyncio.Event()
        self.app: App | None = None
        self._reloading = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, control: asyncio.StreamReader) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        listening = loop.create_task(self._listen(control))
        try:
            try:
                self.app = load(self.path)
                self.app.serve_metrics = False  # the parent serves the sum of every child
                await self.app.open(start=True)
            except Exception as exc:
                text = str(exc) if isinstance(exc, RelevoError) else repr(exc)
                self.report.send(channel.FAILED, error=text)
                return EXIT_START_FAILED
            self.report.send(channel.READY, pid=os.getpid())
            log.debug("child %d ready", self.slot)
            reporting = loop.create_task(self._report_stats())
            await self.stop.wait()
            reporting.cancel()
            try:
                await self.app.close()
                log.debug("child %d: app closed", self.slot)
            except StopTimeout as exc:
                log.error("child %d: %s", self.slot, exc)
                return EXIT_STOP_TIMEOUT
            return EXIT_OK
        finally:
            listening.cancel()
            self._send_stats()

    def _on_signal(self, signum: int) -> None:
        if self.stop.is_set():
            os._exit(128 + signum)  # second signal: no more waiting
        log.info("child %d: %s: stopping gracefully", self.slot, signal.Signals(signum).name)
        self.stop.set()

    async def _listen(self, control: asyncio.StreamReader) -> None:
        await channel.dispatch(control, {
            channel.STOP: lambda _: self.stop.set(),
            channel.RELOAD: self._reload,
        }, f"child {self.slot}")
        if not self.stop.is_set():  # end of file: the parent is gone
            log.warning("child %d: parent gone; stopping gracefully", self.slot)
            self.stop.set()

    def _reload(self, message: channel.Message) -> None:
        task = asyncio.get_running_loop().create_task(self._do_reload())
        self._tasks.add(task)  # held: the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)

    async def _do_reload(self) -> None:
        async with self._reloading:
            if self.app is None or self.stop.is_set():
                return
            try:
                result = await self.app.reload()
            except ConfigError as exc:
                log.error("child %d: reload refused, nothing changed:\n%s", self.slot, exc)
                return
            except Exception as exc:
                log.error("child %d: reload failed: %r", self.slot, exc)
                return
            self.report.send(channel.RELOADED, **result)

    async def _report_stats(self) -> None:
        while True:
            metrics = await self.app.metrics_snapshot() if self.app is not None else None
            self._send_stats(metrics)
            await asyncio.sleep(STATS_EVERY_S)

    def _send_stats(self, metrics: dict[str, Any] | None = None) -> None:
        """Stats, and this child's metric figures when the app has a metrics entry (the
        last ones, sent after the app stopped, without queue counts)."""
        app = self.app
        if app is None:
            return
        if metrics is None:
            metrics = app.metrics_counted()
        extra = {} if metrics is None else {"metrics": metrics}
        self.report.send(channel.STATS, processed=app.processed(), rss=rss_bytes(), **extra)


async def _main(path: str, slot: int, control_fd: int, report_fd: int) -> int:
    report = await channel.Sender.open(report_fd)
    control = await channel.open_reader(control_fd)
    try:
        return await Child(path, slot, report).run(control)
    finally:
        await asyncio.sleep(0)  # let the last message reach the pipe
        report.close()


def child_entry(
    path: str, slot: int, control: Connection, report: Connection, log_level: str,
    log_format: str = "text",
) -> None:
    """The body of a child process (the parent starts it through multiprocessing)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the parent only; the parent decides
    ask_signal_on_parent_death(signal.SIGTERM)
    configure(log_level, log_format, with_pid=True)
    control_fd, report_fd = os.dup(control.fileno()), os.dup(report.fileno())
    control.close()
    report.close()
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(_main(path, slot, control_fd, report_fd))
        log.debug("child %d: event loop closed; exiting with %d", slot, code)
        sys.exit(code)
