"""The status loop of `relevo run`: a live view on a terminal, or an INFO line per interval."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from rich.console import Console
from rich.live import Live

from relevo.status.sampler import Observed, Sampler
from relevo.status.view import line, table

log = logging.getLogger("relevo.status")

LIVE_REFRESH_S = 1.0


async def report(app: Observed, interval_s: float, title: str,
                 console: Console | None = None) -> None:
    """Runs until cancelled. On a terminal, a live view refreshed every second; off one,
    a summary line every `interval_s`. Nothing when `interval_s` is 0."""
    if interval_s <= 0:
        return
    console = console or Console(soft_wrap=True)  # a long log line stays one line
    sampler = Sampler(app)
    if console.is_terminal:
        await _live(sampler, console, title)
    else:
        while True:
            await asyncio.sleep(interval_s)
            log.info("status: %s", line(await sampler.sample()))


async def _live(sampler: Sampler, console: Console, title: str) -> None:
    started = time.monotonic()

    def heading() -> str:
        up = int(time.monotonic() - started)
        return f"{title}  ·  up {up // 3600}:{up // 60 % 60:02d}:{up % 60:02d}"

    with Live(table(await sampler.sample(), heading()), console=console, auto_refresh=False,
              redirect_stdout=True, redirect_stderr=True, transient=False) as live:
        try:
            while True:
                await asyncio.sleep(LIVE_REFRESH_S)
                live.update(table(await sampler.sample(), heading()), refresh=True)
        finally:
            sys.stderr.flush()
