"""Crash a broker under load with real `relevo run` consumers, and count what each message got.

- `PrivateRedis` is a redis-server of the caller's own, on a free port, in a folder of its
  own, with `appendonly yes` and `appendfsync always`, that can be killed with SIGKILL and
  started again from its AOF; no test ever restarts a server other people use.
- RabbitMQ is restarted with rabbitmqctl (stop_app / start_app) by one run at a time on a
  machine: `rabbitmq_restart_turn` is held for the whole run.
- `measure` writes a small application (one queue, one consumer, a handler that appends
  each message ID to its process's file), runs it in `consumers` `relevo run` processes,
  publishes `messages` at a steady pace while `crash` runs, waits until every message was
  handled and the queue is empty, stops the processes, and counts lost and duplicated
  messages. Used by the suite (tests/drivers/test_broker_crashes.py) and by
  `python -m benchmarks.crash_runs`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq

from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.base import QueueSpec
from relevo.drivers.redis.driver import RedisDriver
from relevo.drivers.redis.settings import RedisSettings
from relevo.message import Envelope

ROOT = Path(__file__).resolve().parents[1]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

HANDLER = """\
import asyncio, os
import relevo

_out = open(os.environ["RELEVO_CRASH_LOG"], "a", buffering=1)


async def main(body):
    message = relevo.message()
    _out.write(f"{message.id} {message.attempts}\\n")
    await asyncio.sleep(0.002)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """A durable redis-server owned by one test or run (its pid, port and folder)."""

    def __init__(self, folder: Path, *, durable: bool = True, options: tuple[str, ...] = ()
                 ) -> None:
        self.folder = folder
        self.durable = durable
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start (again, from the AOF) and return once it answers PING (AOF loaded)."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes" if self.durable else "no",
             "--appendfsync", "always", "--save", "", "--logfile",
             str(self.folder / "redis.log"), *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start; see "
                                   f"{self.folder / 'redis.log'}")
            time.sleep(0.02)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; what the AOF holds is all that survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def crash(self, down_s: float) -> None:
        self.kill()
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.start)


RESTART_TURN = Path(tempfile.gettempdir()) / "relevo-rabbitmq-restart.lock"


@contextlib.asynccontextmanager
async def rabbitmq_restart_turn(timeout_s: float = 600.0) -> AsyncIterator[None]:
    """Hold this machine's one turn to restart the local RabbitMQ, for a whole run.

    Test suites of several checkouts share the broker: another run's restart inside this
    run's measurement is an outage it did not plan (more repeats than its bound), and a
    stop_app racing another's start_app fails. A flock is released when its holder exits,
    however it exits, so a crashed run never blocks the next.
    """
    fd = os.open(RESTART_TURN, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another run held {RESTART_TURN} for {timeout_s}s") from None
                await asyncio.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


def rabbitmqctl_available() -> bool:
    """rabbitmqctl is installed and the local node answers it within 30 s."""
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        _rabbitmqctl("status", timeout_s=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


async def restart_rabbitmq(down_s: float) -> None:
    """stop_app / start_app: every connection drops, durable queues come back from disk.
    start_app runs whatever happens (three tries), so the broker is never left stopped
    by this; a broker that does not stop in time is left running."""
    try:
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        await asyncio.sleep(down_s)
    finally:
        for attempt in range(3):
            try:
                await asyncio.to_thread(_rabbitmqctl, "start_app")
                break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if attempt == 2:
                    raise
                await asyncio.sleep(2)
        await asyncio.to_thread(_rabbitmqctl, "await_startup")


async def delete_amqp_queue(queue: str, timeout_s: float = 60.0) -> None:
    """Delete a run's queue, waiting out a broker that someone else is restarting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = await aiormq.connect(AMQP_URL)
            try:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                return
            finally:
                await connection.close()
        except (OSError, aiormq.exceptions.AMQPError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def _rabbitmqctl(command: str, timeout_s: float = 120.0) -> None:
    """Run one rabbitmqctl command; on timeout it is killed with every process under it
    (su starts the Erlang CLI node in a session of its own), so no hung CLI lingers."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(["rabbitmqctl", "-q", command], stdout=output,
                                   stderr=output, stdin=subprocess.DEVNULL)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for pid in [*_descendants(process.pid), process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()
            raise
        if process.returncode != 0:
            output.seek(0)
            raise subprocess.CalledProcessError(process.returncode, process.args,
                                                output.read())


def _descendants(root: int) -> list[int]:
    """Every process under `root`, deepest last (Linux /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Outcome:
    """What one run gave: every published message handled once is lost 0, duplicates 0."""

    published: int
    handled: int  # distinct messages handled
    lost: int
    duplicates: int  # handlings beyond the first, over all messages
    stored_twice: int  # of those: a copy a publish retry stored again (attempts 1 each time)
    bound: int  # prefetch x consumers x crashes: what at-least-once may repeat
    logs: list[Path]

    def __str__(self) -> str:
        return (f"published {self.published}, lost {self.lost}, duplicates "
                f"{self.duplicates} ({self.stored_twice} stored twice by a publish retry; "
                f"bound {self.bound})")


Crash = Callable[[], Awaitable[None]]


@dataclass
class Rig:
    """One run's application: its broker, queue, consumers and their files."""

    folder: Path
    driver_entry: str  # the YAML of the driver entry named `broker`
    queue: str
    consumers: int = 2
    concurrency: int = 8
    prefetch: int = 50

    def write_app(self) -> Path:
        entries = self.driver_entry + textwrap.dedent(f"""\
            - name: tasks
              kind: queue.queue
              driver: broker
              queue_name: {self.queue}
            - name: fn
              kind: function.python
              source: file://handler.py
            - name: worker
              kind: queue.consumer
              queue: tasks
              func: fn
              concurrency: {self.concurrency}
              prefetch: {self.prefetch}
              lifecycle: {{auto_start: true, stop_timeout: 5s}}
            """)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "handler.py").write_text(HANDLER)
        path = self.folder / "app.yaml"
        path.write_text('version: "1.0"\nnamespace: crash\nentries:\n'
                        + textwrap.indent(entries, "  "))
        return path

    def spawn(self, app: Path) -> list[subprocess.Popen[bytes]]:
        processes = []
        for n in range(self.consumers):
            env = dict(os.environ, RELEVO_CRASH_LOG=str(self.folder / f"handled-{n}.txt"))
            with open(self.folder / f"worker-{n}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "relevo", "--log-level", "INFO", "run", str(app)],
                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                ))
        return processes

    def handlings(self) -> dict[str, list[int]]:
        """Message ID -> the attempts number of each time a handler had it."""
        seen: dict[str, list[int]] = collections.defaultdict(list)
        for path in self.folder.glob("handled-*.txt"):
            for line in path.read_text().splitlines():
                message_id, _, attempts = line.partition(" ")
                if attempts:  # a line cut by the process's end is not counted
                    seen[message_id].append(int(attempts))
        return seen


def redis_driver_entry(url: str, prefix: str) -> str:
    return textwrap.dedent(f"""\
        - name: broker
          kind: queue.driver.redis
          url: "{url}"
          key_prefix: "{prefix}"
          claim_idle: 2s
          reconnect_delay: 500ms
          publish_timeout: 30s
          lifecycle: {{auto_start: true}}
        """)


def amqp_driver_entry(url: str = AMQP_URL) -> str:
    return textwrap.dedent(f"""\
        - name: broker
          kind: queue.driver.amqp
          url: "{url}"
          reconnect_delay: 500ms
          reconnect_max_delay: 2s
          publish_timeout: 60s
          lifecycle: {{auto_start: true}}
        """)


async def measure(
    rig: Rig,
    driver: Any,
    *,
    messages: int,
    rate: float,
    crashes: list[tuple[float, Crash]],
    timeout_s: float = 120.0,
) -> Outcome:
    """Publish `messages` at `rate` per second through `driver` (started, same broker)
    while each crash runs at its offset in seconds; count what the consumers handled."""
    await driver.declare(QueueSpec(rig.queue, {}))
    processes = rig.spawn(rig.write_app())
    try:
        await _wait_for_consumers(driver, rig, processes)
        ids = [f"m{n}-{uuid.uuid4().hex[:8]}" for n in range(messages)]
        started = time.monotonic()
        publishing = asyncio.create_task(_publish(driver, rig.queue, ids, rate))
        for offset, crash in crashes:
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            await crash()
        await publishing
        deadline = time.monotonic() + timeout_s
        wanted = set(ids)
        while not wanted <= rig.handlings().keys() or not await _empty(driver, rig.queue):
            _check_alive(processes, rig)
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        # Reclaims happen claim_idle after a crash at the latest: wait one more so late
        # duplicates are counted too.
        await asyncio.sleep(2.5)
    finally:
        await asyncio.to_thread(_stop, processes)
    seen = rig.handlings()
    return Outcome(
        published=messages,
        handled=len(seen.keys() & set(ids)),
        lost=sum(1 for i in ids if i not in seen),
        duplicates=sum(len(a) - 1 for a in seen.values()),
        stored_twice=sum(len(a) - 1 for a in seen.values() if set(a) == {1}),
        bound=rig.prefetch * rig.consumers * len(crashes),
        logs=sorted(rig.folder.glob("worker-*.log")),
    )


async def _publish(driver: Any, queue: str, ids: list[str], rate: float) -> None:
    """Ten batches a second; a batch waits out an outage (publish_timeout) and the pace
    resumes from where it is, as an application's publishes would."""
    batch = max(1, round(rate / 10))
    for start in range(0, len(ids), batch):
        began = time.monotonic()
        await driver.publish(queue, [Envelope(i, b"{}") for i in ids[start : start + batch]])
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))


async def _wait_for_consumers(driver: Any, rig: Rig,
                              processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while (await driver.info(rig.queue)).consumer_count < rig.consumers:
        _check_alive(processes, rig)
        if time.monotonic() > deadline:
            raise AssertionError(f"consumers never attached; see {rig.folder}/worker-*.log")
        await asyncio.sleep(0.05)


async def _empty(driver: Any, queue: str) -> bool:
    try:
        return bool((await driver.info(queue)).message_count == 0)
    except Exception:  # the broker is still coming back
        return False


def _check_alive(processes: list[subprocess.Popen[bytes]], rig: Rig) -> None:
    for n, process in enumerate(processes):
        if process.poll() is not None:
            log = (rig.folder / f"worker-{n}.log").read_text()[-3000:]
            raise AssertionError(f"relevo worker {n} exited with {process.returncode}:\n{log}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_publisher(url: str, prefix: str) -> RedisDriver:
    return RedisDriver(RedisSettings(
        url=url, key_prefix=prefix, publish_timeout=30.0, reconnect_delay=0.2,
        reconnect_max_delay=1.0,
    ))


def amqp_publisher(url: str = AMQP_URL) -> AmqpDriver:
    return AmqpDriver(AmqpSettings(
        url=url, publish_timeout=60.0, reconnect_delay=0.5, reconnect_max_delay=2.0,
    ))
