"""The `relevo` command as a user runs it: a real process, real signals, real exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.appfiles import write_app

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


def test_publish_prints_ids_and_info_prints_json(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py="async def main(body):\n    return body\n")
    result = relevo("publish", str(path), "app:tasks", '{"id": 1}', "--header", "n=3",
                    "--count", "3")
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 3
    assert len(set(ids)) == 3
    info = relevo("info", str(path), "app:tasks")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout) == {  # memory: a new process, a new store
        "message_count": 0, "ready": 0, "in_flight": 0, "consumer_count": 0, "delayed": 0
    }
    missing = relevo("info", str(path), "app:nope")
    assert missing.returncode == 1
    assert "app:nope" in missing.stderr


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
    assert "error: cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/" in result.stderr
