"""What a valid config turns into: IDs, references, env values, file:// paths, durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.config.build import load_registry
from tests.appfiles import write_app


def test_bare_names_resolve_in_their_namespace_and_full_ids_anywhere(tmp_path: Path) -> None:
    write_app(tmp_path / "drivers", "- name: mem\n  kind: queue.driver.memory\n", namespace="infra")
    write_app(tmp_path / "app", (
        "- name: q\n  kind: queue.queue\n  driver: infra:mem\n"
        "  dead_letter: {queue: dlq, max_attempts: 2}\n"
        "- name: dlq\n  kind: queue.queue\n  driver: infra:mem\n"
    ))
    registry = load_registry(tmp_path)
    queue = registry["app:q"]
    assert queue.settings.driver == "infra:mem"
    assert queue.settings.dead_letter.queue == "app:dlq"
    assert set(queue.dependencies) == {"infra:mem", "app:dlq"}


def test_env_values_defaults_and_file_paths_are_substituted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEVO_TEST_HOST", "rabbit.local")
    path = write_app(tmp_path, (
        "- name: d\n  kind: queue.driver.amqp\n"
        "  url: amqp://${env:RELEVO_TEST_HOST}:${env:RELEVO_TEST_PORT:-5672}/\n"
        "  reconnect_delay: 500ms\n  heartbeat: 1m\n"
        "  tls: {enabled: true, ca: file://certs/ca.pem}\n"
    ))
    settings = load_registry(path)["app:d"].settings
    assert settings.url == "amqp://rabbit.local:5672/"
    assert (settings.reconnect_delay, settings.heartbeat) == (0.5, 60.0)
    assert settings.tls.ca == f"file://{tmp_path / 'certs' / 'ca.pem'}"


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    path = write_app(tmp_path, (
        "- name: mem\n  kind: queue.driver.memory\n"
        "- name: q\n  kind: queue.queue\n  driver: mem\n"
        "- name: f\n  kind: function.python\n  handler: json:dumps\n"
        "- name: c\n  kind: queue.consumer\n  queue: q\n  func: f\n"
    ))
    registry = load_registry(path)
    consumer = registry["app:c"]
    assert (consumer.settings.concurrency, consumer.settings.prefetch) == (1, 10)
    assert consumer.settings.auto_ack is False
    lifecycle = consumer.head.lifecycle
    assert (lifecycle.auto_start, lifecycle.start_timeout, lifecycle.stop_timeout) == (
        False, 10.0, 10.0)
    assert (lifecycle.restart.initial_delay, lifecycle.restart.max_delay) == (1.0, 90.0)
    assert registry["app:q"].settings.codec == "json/plain"
    assert registry.levels(registry.closure(["app:c"])) == [
        ["app:f", "app:mem"], ["app:q"], ["app:c"]]


def test_a_folder_is_read_recursively_with_yml_and_yaml(tmp_path: Path) -> None:
    write_app(tmp_path / "a" / "b", "- name: one\n  kind: queue.driver.memory\n")
    (tmp_path / "two.yml").write_text(
        'version: "1.0"\nnamespace: x\nentries:\n  - {name: two, kind: queue.driver.memory}\n')
    (tmp_path / "notes.txt").write_text("not config")
    assert {e.id for e in load_registry(tmp_path)} == {"app:one", "x:two"}
