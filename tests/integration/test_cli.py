"""The `relevo` command as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.appfiles import write_app
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]


def relevo(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", *args], capture_output=True, text=True,
        timeout=timeout_s, cwd=ROOT,
    )


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "relevo", "--log-level", "INFO", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )


def wait_for_line(process: subprocess.Popen[str], text: str) -> list[str]:
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:  # ends when the process does: no hang past its exit
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed; output: {''.join(seen)}")


APP = """\
- name: mem
  kind: queue.driver.memory
  lifecycle: {auto_start: true}
- name: tasks
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  source: file://handler.py
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {auto_start: true, stop_timeout: 300ms}
"""


def test_validate_lists_entries_and_exits_0(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py="async def main(body):\n    return body\n")
    result = relevo("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "app:worker" in result.stdout
    assert "queue.consumer" in result.stdout
    assert "ok: 4 entries" in result.stdout


def test_validate_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    broken = APP.replace("queue: tasks", "queue: tasks\n  concurrency: 0\n  prefetch: 99999")
    path = write_app(tmp_path, broken)
    result = relevo("validate", str(path))
    assert result.returncode == 1
    assert "3 config errors" in result.stderr
    assert "app:worker: concurrency: must be between 1 and 1000" in result.stderr
    assert "app:worker: prefetch: must be between 1 and 10000" in result.stderr
    assert "app:fn: source: file not found" in result.stderr


def test_publish_and_info_refuse_a_memory_queue_and_say_why(tmp_path: Path) -> None:
    """Bug: `relevo publish` to a memory queue printed an ID for a message that vanished
    with the process, and `relevo info` reported an empty queue that was never there."""
    path = write_app(tmp_path, APP, handler__py="async def main(body):\n    return body\n")
    for args in (("publish", str(path), "app:tasks", "{}"), ("info", str(path), "tasks")):
        result = relevo(*args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert "app:tasks is on the memory driver app:mem" in result.stderr
        assert "inside the process that runs the app" in result.stderr


REDIS_APP = """\
- name: redis
  kind: queue.driver.redis
  url: redis://127.0.0.1:6379/0
  key_prefix: '{prefix}'
- name: tasks
  kind: queue.queue
  driver: redis
"""


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    require_service("redis", "127.0.0.1", 6379)
    prefix = f"relevo-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    with redis.Redis.from_url("redis://127.0.0.1:6379/0") as client:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


@pytest.mark.broker
def test_publish_count_prints_how_many_and_the_first_and_last_ids(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Bug: `publish --count 990` printed 990 IDs."""
    path = write_app(tmp_path, REDIS_APP.format(prefix=redis_prefix))
    result = relevo("publish", str(path), "tasks", '{"id": 1}', "--header", "n=3",
                    "--count", "990")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"published 990 messages to app:tasks: first (\S+)-1, "
                        r"last \1-990\n", result.stdout), result.stdout
    one = relevo("publish", str(path), "app:tasks", "{}")
    assert re.fullmatch(r"\S+-1\n", one.stdout), one.stdout  # one message: its ID alone
    info = relevo("info", str(path), "tasks")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["message_count"] == 991


@pytest.mark.broker
def test_info_never_creates_a_queue_on_the_broker(tmp_path: Path, redis_prefix: str) -> None:
    """Bug: `relevo info` on a queue nobody had used declared it on the broker and
    reported it empty."""
    path = write_app(tmp_path, REDIS_APP.format(prefix=redis_prefix))
    result = relevo("info", str(path), "app:tasks")
    assert result.returncode == 1
    assert "not declared" in result.stderr
    with redis.Redis.from_url("redis://127.0.0.1:6379/0") as client:
        assert not client.exists(f"{redis_prefix}tasks")


def test_a_bare_queue_name_must_name_one_queue(tmp_path: Path) -> None:
    write_app(tmp_path / "a", REDIS_APP.format(prefix="x:"), namespace="one")
    write_app(tmp_path / "b", REDIS_APP.format(prefix="y:"), namespace="two")
    result = relevo("info", str(tmp_path), "tasks")
    assert result.returncode == 1
    assert "'tasks' is ambiguous: one:tasks, two:tasks" in result.stderr
    missing = relevo("info", str(tmp_path), "nope")
    assert missing.returncode == 1
    assert "no queue entry 'nope'; queues: one:tasks, two:tasks" in missing.stderr


def test_version_prints_the_version() -> None:
    result = relevo("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"relevo, version \d+\.\d+\.\d+.*\n", result.stdout)


def test_validate_loads_handlers_and_names_the_file_of_one_that_cannot_load(
    tmp_path: Path,
) -> None:
    """Bug: a handler method that did not exist passed `validate` and failed at run time,
    naming an internal module (relevo_fn_...) instead of the file, without saying what
    the file has."""
    path = write_app(tmp_path, APP.replace("source: file://handler.py",
                                           "source: file://handler.py\n  method: handle"),
                     handler__py="def main(body): ...\ndef other(body): ...\n")
    result = relevo("validate", str(path))
    assert result.returncode == 1
    assert (f"app.yaml:10: app:fn: method: {tmp_path / 'handler.py'} has no callable 'handle'; "
            "it defines: main, other") in result.stderr
    assert "relevo_fn_" not in result.stderr
    skipped = relevo("validate", "--no-import", str(path))
    assert skipped.returncode == 0, skipped.stderr


def test_validate_compiles_lua_sources(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP.replace("kind: function.python\n  source: file://handler.py",
                                           "kind: function.lua\n  source: file://h.lua"),
                     h__lua="return function(body)\n  if then end\nend\n")
    result = relevo("validate", str(path))
    assert result.returncode == 1
    assert "app:fn: source:" in result.stderr
    assert "h.lua:2:" in result.stderr


def test_publish_delays_messages_and_refuses_a_negative_delay(
    tmp_path: Path, redis_prefix: str
) -> None:
    path = write_app(tmp_path, REDIS_APP.format(prefix=redis_prefix))
    for delay in ("30s", "45"):
        result = relevo("publish", str(path), "app:tasks", '{"id": 1}', "--delay", delay)
        assert result.returncode == 0, result.stderr
    info = relevo("info", str(path), "app:tasks")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["delayed"] == 2
    assert json.loads(info.stdout)["message_count"] == 0
    bad = relevo("publish", str(path), "app:tasks", '{"id": 1}', "--delay", "-5s")
    assert bad.returncode == 1
    assert "delay: a duration cannot be negative" in bad.stderr



def test_run_stops_gracefully_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py="async def main(body):\n    return body\n")
    process = spawn("run", str(path))
    wait_for_line(process, "running; press Ctrl-C")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


SLOW_HANDLER = (
    "import asyncio, logging\n"
    "async def main(body):\n"
    "    logging.getLogger('relevo').info('handler started')\n"
    "    await asyncio.sleep(60)\n"
)


def run_with_a_message(path: Path) -> subprocess.Popen[str]:
    """`relevo run`, plus one message published from inside once the consumer runs (a
    memory queue cannot be reached from another process)."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_WITH_MESSAGE.format(path=str(path))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )


def test_run_exits_1_when_a_handler_outlives_stop_timeout(tmp_path: Path) -> None:
    process = run_with_a_message(write_app(tmp_path, APP, handler__py=SLOW_HANDLER))
    wait_for_line(process, "handler started")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 1


_RUN_WITH_MESSAGE = """
import asyncio, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
from relevo import cli
real_run = cli._run
async def run_and_publish(app):
    async def publish_when_up():
        while not app.queues or app.status("app:worker") != "running":
            await asyncio.sleep(0.01)
        await app.publish("app:tasks", {{}})
    task = asyncio.create_task(publish_when_up())
    await real_run(app)
    await task
cli._run = run_and_publish
sys.argv = ["relevo", "run", {path!r}]
cli.main()
"""


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP.replace("300ms", "60s"), handler__py=SLOW_HANDLER)
    process = run_with_a_message(path)
    wait_for_line(process, "handler started")
    process.send_signal(signal.SIGINT)
    wait_for_line(process, "stopping gracefully")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 128 + signal.SIGINT


def test_run_exits_1_when_a_driver_cannot_reach_its_broker(tmp_path: Path) -> None:
    path = write_app(tmp_path, """\
- name: rabbit
  kind: queue.driver.amqp
  url: amqp://guest:guest@127.0.0.1:1/
  lifecycle: {auto_start: true, start_timeout: 2s}
""")
    result = relevo("run", str(path))
    assert result.returncode == 1
    assert ("error: app:rabbit: cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/"
            in result.stderr)
