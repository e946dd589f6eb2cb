"""Every config problem is reported at once, naming file, line, entry, field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.config.build import load_registry
from relevo.errors import ConfigError, ConfigIssue
from tests.appfiles import MEMORY_DRIVER, write_app


def issues_of(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    return caught.value.issues


def only_issue(path: Path) -> ConfigIssue:
    issues = issues_of(path)
    assert len(issues) == 1, issues
    return issues[0]


QUEUE = "- name: q\n  kind: queue.queue\n  driver: mem\n"
FUNC = "- name: f\n  kind: function.python\n  handler: json:dumps\n"


def test_an_unknown_kind_lists_the_known_ones(tmp_path: Path) -> None:
    issue = only_issue(write_app(tmp_path, "- name: x\n  kind: queue.driver.kafka\n"))
    assert (issue.entry, issue.field, issue.line) == ("app:x", "kind", 5)
    assert "queue.driver.amqp" in issue.message
    assert "queue.driver.kafka" in issue.message


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + "- name: q\n  kind: queue.queue\n"))
    assert (issue.entry, issue.field, issue.message) == ("app:q", "driver", "is required")
    assert issue.file == str(tmp_path / "app.yaml")


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("concurrency", 0, "between 1 and 1000"), ("concurrency", 1001, "between 1 and 1000"),
     ("prefetch", 0, "between 1 and 10000"), ("prefetch", 10001, "between 1 and 10000")],
)
def test_numbers_outside_their_range_name_the_range(
    tmp_path: Path, field: str, value: int, allowed: str
) -> None:
    consumer = f"- name: c\n  kind: queue.consumer\n  queue: q\n  func: f\n  {field}: {value}\n"
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + QUEUE + FUNC + consumer))
    assert (issue.entry, issue.field, issue.line) == ("app:c", field, 16)
    assert allowed in issue.message
    assert str(value) in issue.message


def test_an_unknown_codec_lists_the_codecs(tmp_path: Path) -> None:
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + QUEUE + "  codec: xml\n"))
    assert issue.field == "codec"
    assert "json/plain" in issue.message
    assert "application/msgpack" in issue.message


def test_references_must_exist_and_be_of_the_right_kind(tmp_path: Path) -> None:
    consumer = "- name: c\n  kind: queue.consumer\n  queue: mem\n  func: nowhere\n"
    issues = issues_of(write_app(tmp_path, MEMORY_DRIVER + consumer))
    by_field = {i.field: i.message for i in issues}
    assert "is a queue.driver.memory; expected a queue" in by_field["queue"]
    assert "no entry 'app:nowhere'" in by_field["func"]


def test_a_dependency_cycle_is_shown_as_a_path(tmp_path: Path) -> None:
    entries = (
        "- name: a\n  kind: queue.driver.memory\n  lifecycle: {depends_on: [b]}\n"
        "- name: b\n  kind: queue.driver.memory\n  lifecycle: {depends_on: [a]}\n"
    )
    issue = only_issue(write_app(tmp_path, entries))
    assert "cycle" in issue.message
    assert "app:a" in issue.message
    assert "app:b" in issue.message


def test_an_unset_environment_variable_names_the_entry_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELEVO_TEST_UNSET", raising=False)
    entries = "- name: d\n  kind: queue.driver.amqp\n  url: ${env:RELEVO_TEST_UNSET}\n"
    issue = only_issue(write_app(tmp_path, entries))
    assert (issue.entry, issue.field, issue.line) == ("app:d", "url", 6)
    assert "RELEVO_TEST_UNSET" in issue.message


def test_duplicate_ids_across_files_name_the_first_definition(tmp_path: Path) -> None:
    write_app(tmp_path / "one", MEMORY_DRIVER)
    write_app(tmp_path / "two", MEMORY_DRIVER)
    issue = only_issue(tmp_path)
    assert issue.entry == "app:mem"
    assert "duplicate" in issue.message
    assert str(tmp_path / "one" / "app.yaml") in issue.message


def test_unknown_fields_are_errors_that_list_the_allowed_ones(tmp_path: Path) -> None:
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + "  concurency: 3\n"))
    assert issue.field == "concurency"
    assert "publish_timeout" in issue.message


def test_the_allowed_fields_are_named_as_a_config_file_writes_them(tmp_path: Path) -> None:
    """The postgres driver's `schema` field (held as `schema_name` in its model) was
    listed as `schema_name` among the allowed fields, a name no config file accepts."""
    issue = only_issue(write_app(
        tmp_path, "- name: db\n  kind: queue.driver.postgres\n  schemas: app\n"
    ))
    allowed = issue.message.split("allowed: ")[1].split(", ")
    assert "schema" in allowed
    assert "schema_name" not in allowed


def test_driver_options_are_checked_against_the_queues_driver(tmp_path: Path) -> None:
    queue = QUEUE + "  driver_options:\n    memory: {max_length: 0}\n    kafka: {}\n"
    issues = issues_of(write_app(tmp_path, MEMORY_DRIVER + queue))
    fields = sorted(i.field or "" for i in issues)
    assert fields == ["driver_options.kafka", "driver_options.memory.max_length"]


AMQP_DRIVER = "- name: rabbit\n  kind: queue.driver.amqp\n"


def test_an_amqp_queue_type_names_the_allowed_types(tmp_path: Path) -> None:
    queue = ("- name: q\n  kind: queue.queue\n  driver: rabbit\n"
             "  driver_options:\n    amqp: {queue_type: qorum}\n")
    issue = only_issue(write_app(tmp_path, AMQP_DRIVER + queue))
    assert (issue.entry, issue.field) == ("app:q", "driver_options.amqp.queue_type")
    assert "'classic' or 'quorum'" in issue.message
    assert "qorum" in issue.message


def test_a_quorum_queue_that_is_not_durable_is_refused_with_the_reason(tmp_path: Path) -> None:
    queue = ("- name: q\n  kind: queue.queue\n  driver: rabbit\n"
             "  driver_options:\n    amqp: {queue_type: quorum, durable: false}\n")
    issue = only_issue(write_app(tmp_path, AMQP_DRIVER + queue))
    assert (issue.entry, issue.field) == ("app:q", "driver_options.amqp")
    assert "always durable" in issue.message


def test_every_problem_is_reported_at_once_and_str_lists_them(tmp_path: Path) -> None:
    entries = (
        "- name: x\n  kind: nope\n"
        "- name: q\n  kind: queue.queue\n  driver: mem\n  codec: yaml\n"
        "- name: c\n  kind: queue.consumer\n  queue: q\n  func: f\n  concurrency: 5000\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_registry(write_app(tmp_path, entries))
    text = str(caught.value)
    assert text.startswith("3 config errors:")
    assert "app.yaml:5: app:x: kind:" in text
    assert "app:c: concurrency:" in text


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('version: "1.0"\nnamespace: app\nentries:\n  - name: [unclosed\n')
    issue = only_issue(path)
    assert issue.file == str(path)
    assert issue.line is not None
    assert "invalid YAML" in issue.message


def test_a_missing_source_file_is_reported(tmp_path: Path) -> None:
    entries = "- name: f\n  kind: function.lua\n  source: file://missing.lua\n"
    issue = only_issue(write_app(tmp_path, entries))
    assert issue.field == "source"
    assert str(tmp_path / "missing.lua") in issue.message


def test_a_path_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    assert "no such file" in only_issue(tmp_path / "nope.yaml").message


def test_a_bad_duration_says_what_it_got_once(tmp_path: Path) -> None:
    """Bug: the message repeated itself: "got '10 secs' (got '10 secs')"."""
    issue = only_issue(write_app(
        tmp_path, "- name: mem\n  kind: queue.driver.memory\n"
                  "  lifecycle: {start_timeout: 10 secs}\n"))
    assert issue.field == "lifecycle.start_timeout"
    assert issue.message.count("10 secs") == 1
    assert "'500ms', '10s'" in issue.message


def test_an_invalid_queue_is_not_reported_again_as_missing_by_its_consumer(
    tmp_path: Path,
) -> None:
    """Bug: `max_attempts: 0` also produced "queue: no entry 'app:q'" on the consumer,
    a false second error about a queue that is there."""
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + FUNC + """\
- name: dead
  kind: queue.queue
  driver: mem
- name: q
  kind: queue.queue
  driver: mem
  dead_letter: {queue: dead, max_attempts: 0}
- name: w
  kind: queue.consumer
  queue: q
  func: f
"""))
    assert (issue.entry, issue.field) == ("app:q", "dead_letter.max_attempts")
    assert issue.message == "must be at least 1 (got 0)"


def test_a_yaml_syntax_error_names_the_file_and_not_an_internal_stream(tmp_path: Path) -> None:
    """Bug: the message said `in "<unicode string>"` instead of naming the file."""
    path = tmp_path / "app.yaml"
    path.write_text('version: "1.0"\nnamespace: app\nentries:\n  - {name: mem, kind: x\n')
    issue = only_issue(path)
    assert issue.file == str(path)
    assert "<unicode string>" not in issue.message
    assert "expected ',' or '}'" in issue.message
    assert "line 4" in issue.message  # where the unclosed mapping starts


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [("initial_delay", "-1s", "cannot be negative"), ("max_delay", -5, "cannot be negative"),
     ("factor", 0.5, "at least 1.0"), ("jitter", 1.5, "between 0.0 and 1.0"),
     ("jitter", -0.1, "between 0.0 and 1.0")],
)
def test_retry_fields_outside_their_range_name_file_entry_field_and_range(
    tmp_path: Path, field: str, value: object, allowed: str
) -> None:
    queue = QUEUE + f"  retry: {{{field}: {value}}}\n"
    issue = only_issue(write_app(tmp_path, MEMORY_DRIVER + queue))
    assert (issue.entry, issue.field) == ("app:q", f"retry.{field}")
    assert issue.file == str(tmp_path / "app.yaml")
    assert allowed in issue.message
