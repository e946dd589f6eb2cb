"""What the parent takes from the config: sharing, restart policy, stop budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.backoff import Backoff
from relevo.config.build import load_registry
from relevo.errors import ConfigError
from relevo.process.policy import check_shareable, restart_policy, stop_budget_s
from relevo.registry import Registry
from tests.appfiles import write_app

APP = """\
- name: {driver}
  kind: queue.driver.{driver}
  lifecycle: {{auto_start: true, stop_timeout: 2s}}
- name: tasks
  kind: queue.queue
  driver: {driver}
- name: fn
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: worker
  kind: queue.consumer
  queue: tasks
  func: fn
  lifecycle: {{auto_start: true, stop_timeout: 3s, restart: {restart}}}
"""


def registry(tmp_path: Path, driver: str = "memory", restart: str = "{}") -> Registry:
    return load_registry(write_app(tmp_path, APP.format(driver=driver, restart=restart)))


def test_consumers_on_a_memory_queue_are_refused_in_several_processes(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    check_shareable(reg, 1)
    with pytest.raises(ConfigError) as caught:
        check_shareable(reg, 2)
    (issue,) = caught.value.issues
    assert (issue.entry, issue.field) == ("app:worker", "queue")
    assert "cannot be shared between processes" in issue.message
    check_shareable(registry(tmp_path / "r", "redis"), 4)


def test_the_restart_policy_defaults_to_1s_doubling_to_90s_forever(tmp_path: Path) -> None:
    assert restart_policy(registry(tmp_path)) == Backoff()


def test_the_restart_policy_takes_the_smallest_max_attempts_set(tmp_path: Path) -> None:
    policy = restart_policy(registry(
        tmp_path, restart="{initial_delay: 2s, max_attempts: 3}"))
    assert (policy.initial_delay_s, policy.max_attempts) == (2.0, 3)
    assert policy.gives_up(4)
    assert not policy.gives_up(3)


def test_the_stop_budget_adds_the_slowest_stop_of_each_level(tmp_path: Path) -> None:
    # worker (3s), then tasks (10s by default), then the driver (2s) and fn (10s)
    assert stop_budget_s(registry(tmp_path)) == 3.0 + 10.0 + 10.0
