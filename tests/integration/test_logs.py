"""`relevo run --log-format json|text`: one object per line with the message fields, and a
poison message summarised instead of flooding the log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.appfiles import write_app
from tests.integration.test_cli import ROOT, wait_for_line

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
  lifecycle: {auto_start: true, stop_timeout: 1s}
"""

POISON = (
    "import logging, relevo\n"
    "async def main(body):\n"
    "    if relevo.message().attempts == 40:\n"
    "        logging.getLogger('app').info('forty attempts')\n"
    "    raise ValueError('poison')\n"
)

_RUN = """
import asyncio, sys
from relevo import cli
real_run = cli._run
async def run_and_publish(app):
    async def publish_when_up():
        while not app.queues or app.status("app:worker") != "running":
            await asyncio.sleep(0.01)
        await app.publish("app:tasks", {{"n": 1}})
    task = asyncio.create_task(publish_when_up())
    await real_run(app)
    await task
cli._run = run_and_publish
sys.argv = ["relevo", "run", {path!r}, "--log-format", {fmt!r}]
cli.main()
"""


def run_poison(tmp_path: Path, fmt: str) -> list[str]:
    """`relevo run` with one message that always fails, until it failed 40 times."""
    path = write_app(tmp_path, APP, handler__py=POISON)
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN.format(path=str(path), fmt=fmt)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    lines = wait_for_line(process, "forty attempts")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    return [line for line in "".join([*lines, out]).splitlines() if line.strip()]


def test_json_lines_carry_the_message_fields_and_a_poison_message_is_summarised(
    tmp_path: Path,
) -> None:
    lines = run_poison(tmp_path, "json")
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    failures = [r for r in records if "failed (attempt" in r["message"]]
    assert [r["attempts"] for r in failures] == [1, 2, 3, 4]
    assert {r["queue"] for r in failures} == {"app:tasks"}
    assert {r["consumer"] for r in failures} == {"app:worker"}
    assert len({r["message_id"] for r in failures}) == 1
    assert "ValueError: poison" in failures[0]["exception"]
    assert "summarised" in failures[3]["message"]


def test_text_lines_carry_the_same_fields(tmp_path: Path) -> None:
    lines = run_poison(tmp_path, "text")
    failures = [line for line in lines if "failed (attempt" in line]
    assert len(failures) == 4
    assert "app:worker" in failures[0]
    assert "app:tasks" in failures[0]
    assert "(attempt 1)" in failures[0]


HEALTHY = "async def main(body):\n    return body\n"


def test_off_a_terminal_run_logs_a_status_line_per_interval(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py=HEALTHY)
    code = _RUN.format(path=str(path), fmt="json").replace(
        '"--log-format"', '"--status-interval", "100ms", "--log-format"'
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    lines = wait_for_line(process, "in flight")  # the first status line
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    status = json.loads(lines[-1])
    assert status["logger"] == "relevo.status"
    assert status["level"] == "INFO"
    assert "app:worker [running]" in status["message"]
    assert "app:tasks ready 0, in flight 0, delayed 0" in status["message"]
