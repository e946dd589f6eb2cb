"""The registry's dependency order (what starts first, what stops first, cycles) and the
queue a name means."""

from __future__ import annotations

import pytest

from relevo.errors import QueueNotFound
from relevo.registry import Entry, Registry


def registry(**deps: tuple[str, ...]) -> Registry:
    """Entries named by keyword, each depending on the IDs given."""
    return Registry({
        name: Entry(name, "test.kind", "app.yaml", None, None, None,  # type: ignore[arg-type]
                    references=needs)
        for name, needs in deps.items()
    })


APP = registry(driver=(), queue=("driver",), dlq=("driver",), func=(),
               consumer=("queue", "func", "dlq"), lonely=())


def test_levels_start_each_entry_after_everything_it_depends_on() -> None:
    assert APP.levels(APP.entries) == [
        ["driver", "func", "lonely"], ["dlq", "queue"], ["consumer"],
    ]


def test_closure_is_the_entries_named_plus_all_they_depend_on() -> None:
    assert APP.closure(["consumer"]) == {"consumer", "queue", "func", "dlq", "driver"}
    assert APP.closure(["queue"]) == {"queue", "driver"}


def test_dependents_are_every_entry_that_needs_it_directly_or_not() -> None:
    assert APP.dependents("driver") == {"queue", "dlq", "consumer"}
    assert APP.dependents("consumer") == set()


def test_levels_of_a_subset_ignore_dependencies_outside_it() -> None:
    assert APP.levels(["consumer", "queue"]) == [["queue"], ["consumer"]]


def test_a_cycle_is_found_as_a_path_and_refused_by_levels() -> None:
    looped = registry(a=("b",), b=("c",), c=("a",), d=())
    cycle = looped.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="cycle"):
        looped.levels(looped.entries)
    assert APP.find_cycle() is None


def test_a_dependency_named_twice_counts_once() -> None:
    entry = Entry("c", "k", "f", None, None, None,  # type: ignore[arg-type]
                  references=("q", "f"), depends_on=("q",))
    assert entry.dependencies == ("q", "f")


def test_of_kind_selects_by_kind_prefix() -> None:
    mixed = Registry({
        "q": Entry("q", "queue", "f", None, None, None),  # type: ignore[arg-type]
        "d": Entry("d", "queue.driver.memory", "f", None, None, None),  # type: ignore[arg-type]
        "c": Entry("c", "consumer", "f", None, None, None),  # type: ignore[arg-type]
    })
    assert [e.id for e in mixed.of_kind("queue.driver.")] == ["d"]
    assert sorted(e.id for e in mixed.of_kind("queue")) == ["d", "q"]


def test_a_queue_is_named_by_its_full_id_or_a_bare_name_one_namespace_has() -> None:
    queues = Registry({
        entry_id: Entry(entry_id, kind, "app.yaml", None, None, None)  # type: ignore[arg-type]
        for entry_id, kind in [("one:tasks", "queue.queue"), ("two:tasks", "queue.queue"),
                               ("one:mail", "queue.queue"), ("one:fn", "function.python")]
    })
    assert queues.queue_id("two:tasks") == "two:tasks"
    assert queues.queue_id("mail") == "one:mail"
    with pytest.raises(QueueNotFound, match="'tasks' is ambiguous: one:tasks, two:tasks"):
        queues.queue_id("tasks")
    with pytest.raises(QueueNotFound, match="no queue entry 'fn'; queues: one:mail, one:tasks"):
        queues.queue_id("fn")
