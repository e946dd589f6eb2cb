"""Running `relevo run --processes N` as a real process and reading what it logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from redis.asyncio import Redis

from tests.appfiles import write_app

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
_READY = re.compile(r"child (\d+) \(pid (\d+)\) ready")

# Each message appends "<pid> <id>" to SEEN.started as its handler starts and each handled
# message appends "<pid> <id> <epoch seconds>" to the file SEEN names: the test counts IDs,
# and times what a child did by the clock of the child that did it.
RECORDING_HANDLER = """\
import asyncio, os, time
import relevo

SEEN = {seen!r}
DELAY_S = {delay_s!r}

async def main(body):
    with open(SEEN + ".started", "a") as started:
        started.write(f"{{os.getpid()}} {{relevo.message().id}}\\n")
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    with open(SEEN, "a") as seen:
        seen.write(f"{{os.getpid()}} {{relevo.message().id}} {{time.time()!r}}\\n")
"""


def redis_app(folder: Path, prefix: str, *, delay_s: float = 0.0, concurrency: int = 4,
              prefetch: int = 10, stop_timeout: str = "5s", restart: str = "{}",
              handler: str | None = None, seen: Path | None = None) -> Path:
    seen = seen or folder / "seen.txt"
    code = handler or RECORDING_HANDLER.format(seen=str(seen), delay_s=delay_s)
    return write_app(folder, f"""\
- name: redis
  kind: queue.driver.redis
  url: {REDIS_URL}
  key_prefix: '{prefix}'
  claim_idle: 1s
  block: 100ms
  lifecycle: {{auto_start: true}}
- name: tasks
  kind: queue.queue
  driver: redis
- name: fn
  kind: function.python
  source: file://handler.py
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  concurrency: {concurrency}
  prefetch: {prefetch}
  lifecycle: {{auto_start: true, stop_timeout: {stop_timeout}, restart: {restart}}}
""", handler__py=code)


async def fresh_prefix() -> AsyncIterator[str]:
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    async with Redis.from_url(REDIS_URL) as client:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)


def seen_ids(path: Path) -> list[tuple[int, str]]:
    return [(pid, message_id) for pid, message_id, _ in _seen_rows(path)]


def first_handled_at(path: Path, pid: int) -> float | None:
    """When process `pid` finished its first message, by its own clock (epoch seconds)."""
    times = [at for who, _, at in _seen_rows(path) if who == pid and at is not None]
    return min(times, default=None)


def _seen_rows(path: Path) -> list[tuple[int, str, float | None]]:
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line still being written is not counted
    rows = [line.split() for line in complete.splitlines()]
    return [(int(row[0]), row[1], float(row[2]) if len(row) == 3 else None)
            for row in rows if len(row) in (2, 3)]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Relevo:
    """`relevo run ...` in a process of its own; its output is collected line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relevo", "--log-level", "INFO", "run", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def ready_pids(self) -> dict[int, int]:
        """The latest ready child of each slot: slot -> pid."""
        found: dict[int, int] = {}
        for line in list(self.lines):
            if match := _READY.search(line):
                found[int(match.group(1))] = int(match.group(2))
        return found

    def logged_at(self, text: str) -> float:
        """When the first line holding `text` was logged (epoch seconds, the logging
        process's clock, to the millisecond of the text format)."""
        line = next(line for line in list(self.lines) if text in line)
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    def all_ready_pids(self) -> list[int]:
        return [int(m.group(2)) for line in list(self.lines) if (m := _READY.search(line))]

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(5.0)
        return code

    def stop(self) -> None:
        """Clean up after a failed test: kill it, and whatever children it left."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.all_ready_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
