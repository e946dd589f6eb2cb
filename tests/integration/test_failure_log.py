"""Every failed delivery is one log line with the same fields, whatever the handler."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import relevo
from tests.appfiles import write_app
from tests.waiting import wait_until

FUNCTIONS = {
    "raises": 'kind: function.python\n  handler: "tests.integration.handlers:record"',
    "returns False": 'kind: function.python\n  handler: "tests.integration.handlers:returns_false"',
    "returns an error": 'kind: function.python\n'
                        '  handler: "tests.integration.handlers:returns_error"',
    "Lua nil, err": "kind: function.lua\n  source: file://h.lua",
}
REASONS = {
    "raises": "ValueError: task None failed on purpose",
    "returns False": "handler returned False",
    "returns an error": "RuntimeError: returned, not raised",
    "Lua nil, err": "LuaHandlerError: card declined",
}


@pytest.mark.parametrize("how", list(FUNCTIONS))
async def test_a_failure_is_one_warning_with_queue_consumer_message_attempts_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Bug: `return False` and Lua `return nil, err` failed silently, and raised errors
    were logged without the attempt count."""
    path = write_app(tmp_path, f"""\
- name: mem
  kind: queue.driver.memory
- name: tasks
  kind: queue.queue
  driver: mem
  dead_letter: {{queue: dead, max_attempts: 2}}
- name: dead
  kind: queue.queue
  driver: mem
- name: fn
  {FUNCTIONS[how]}
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true}}
""", h__lua='return function(body)\n  return nil, "card declined"\nend\n')
    caplog.set_level(logging.WARNING, logger="relevo")
    async with relevo.load(path) as app:
        sent = await app.publish("app:tasks", {"fail": True})

        def failures() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "relevo.consumer"]

        await wait_until(lambda: len(failures()) == 2, what="two failed attempts logged")
    for attempt, record in enumerate(failures(), start=1):
        assert record.levelno == logging.WARNING
        assert record.getMessage() == (
            f"app:worker: message {sent} from app:tasks failed (attempt {attempt}): "
            f"{REASONS[how]}"
        )
        fields = (record.queue, record.consumer, record.message_id,  # type: ignore[attr-defined]
                  record.attempts)  # type: ignore[attr-defined]
        assert fields == ("app:tasks", "app:worker", sent, attempt)
