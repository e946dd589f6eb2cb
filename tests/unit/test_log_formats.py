"""The log formats and the failure digest, record by record."""

from __future__ import annotations

import json
import logging

from relevo.consumer.failures import FULL_LINES, SUMMARY_EVERY_S, FailureDigest
from relevo.logs.formats import JsonFormatter, TextFormatter


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("relevo.consumer", logging.WARNING, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_json_line_has_time_level_logger_message_and_the_message_fields() -> None:
    line = json.loads(JsonFormatter().format(
        record("failed", queue="a:q", consumer="a:c", message_id="m-1", attempts=2)
    ))
    assert line["level"] == "WARNING"
    assert line["logger"] == "relevo.consumer"
    assert line["message"] == "failed"
    assert line["time"].endswith("Z")
    assert (line["queue"], line["consumer"], line["message_id"], line["attempts"]) == (
        "a:q", "a:c", "m-1", 2)


def test_a_json_line_about_no_message_has_no_message_fields() -> None:
    line = json.loads(JsonFormatter().format(record("running")))
    assert set(line) == {"time", "level", "logger", "message"}


def test_a_text_line_appends_the_fields_its_message_does_not_show() -> None:
    text = TextFormatter().format(record("handler is slow", queue="a:q", message_id="m-1"))
    assert text.endswith("relevo.consumer: handler is slow queue=a:q message_id=m-1")
    shown = TextFormatter().format(record("m-1 failed", message_id="m-1"))
    assert shown.endswith("m-1 failed")


def test_the_digest_logs_the_first_failures_then_one_line_a_minute_per_message() -> None:
    now = [0.0]
    digest = FailureDigest(clock=lambda: now[0])
    admitted = [digest.admit("c", "m", n) for n in range(1, FULL_LINES + 2)]
    assert admitted == [0] * (FULL_LINES + 1)
    assert [digest.admit("c", "m", n) for n in range(10, 20)] == [None] * 10
    assert digest.admit("c", "other", 10) == 0  # another message keeps its own count
    now[0] += SUMMARY_EVERY_S
    assert digest.admit("c", "m", 20) == 10
