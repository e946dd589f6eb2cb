"""What a reload restarts: changed entries, their dependents, and nothing else."""

from __future__ import annotations

from pathlib import Path

from relevo.config.build import load_registry
from relevo.reload.diff import fingerprints, plan
from tests.appfiles import write_app

APP = """\
- name: mem
  kind: queue.driver.memory
- name: q1
  kind: queue.queue
  driver: mem
- name: q2
  kind: queue.queue
  driver: mem
- name: fn
  kind: function.python
  source: file://handler.py
- name: c1
  kind: queue.consumer
  queue: q1
  func: fn
- name: c2
  kind: queue.consumer
  queue: q2
  func: fn
"""


def test_a_changed_source_file_restarts_its_function_and_every_consumer_of_it(
    tmp_path: Path,
) -> None:
    path = write_app(tmp_path, APP, handler__py="def main(body):\n    return 1\n")
    old = load_registry(path)
    before = fingerprints(old)
    (tmp_path / "handler.py").write_text("def main(body):\n    return 2\n")
    new = load_registry(path)
    todo = plan(before, new, fingerprints(new))
    assert todo.as_dict() == {"added": [], "removed": [], "restarted": ["app:c1", "app:c2",
                                                                         "app:fn"]}


def test_a_moved_line_or_a_comment_restarts_nothing(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py="def main(body):\n    return 1\n")
    before = fingerprints(load_registry(path))
    path.write_text("# a comment\n\n" + path.read_text())
    new = load_registry(path)
    assert plan(before, new, fingerprints(new)).as_dict() == {
        "added": [], "removed": [], "restarted": []}


def test_a_changed_queue_restarts_its_consumer_but_not_its_driver(tmp_path: Path) -> None:
    path = write_app(tmp_path, APP, handler__py="def main(body):\n    return 1\n")
    before = fingerprints(load_registry(path))
    write_app(tmp_path, APP.replace("- name: q2\n  kind: queue.queue\n  driver: mem\n",
                                    "- name: q2\n  kind: queue.queue\n  driver: mem\n"
                                    "  queue_name: renamed\n"))
    new = load_registry(path)
    assert plan(before, new, fingerprints(new)).restarted == ["app:c2", "app:q2"]
