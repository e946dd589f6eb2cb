"""What the parent reads from the application's config: whether it can run in several
processes, how to restart a child, and how long a child may take to stop."""

from __future__ import annotations

from relevo.backoff import Backoff
from relevo.errors import ConfigError, ConfigIssue
from relevo.registry import Registry


def check_shareable(registry: Registry, processes: int) -> None:
    """A memory driver lives inside one process: with several, each child would have its
    own store, and what one child's publisher stores another child's consumer never sees."""
    if processes <= 1:
        return
    issues = []
    for entry in registry.consumers():
        queue = registry[entry.settings.queue]
        driver = registry[queue.settings.driver]
        if driver.kind == "queue.driver.memory":
            issues.append(ConfigIssue(
                entry.file, entry.line, entry.id, "queue",
                f"reads {queue.id}, a queue on the memory driver {driver.id}, which cannot "
                f"be shared between processes; with --processes {processes} use a broker "
                "driver (redis, amqp) or run one process",
            ))
    if issues:
        raise ConfigError(issues)


def restart_policy(registry: Registry) -> Backoff:
    """How the parent restarts a dead child: the `lifecycle.restart` of the auto_start
    entries (defaults 1s doubling to 90s, never giving up). Where they differ, the
    longest delays win and the smallest `max_attempts` that is set."""
    policies = [e.head.lifecycle.restart for e in registry if e.head.lifecycle.auto_start]
    if not policies:
        return Backoff()
    attempts = [p.max_attempts for p in policies if p.max_attempts > 0]
    return Backoff(
        initial_delay_s=max(p.initial_delay for p in policies),
        max_delay_s=max(p.max_delay for p in policies),
        factor=max(p.backoff_factor for p in policies),
        jitter=max(p.jitter for p in policies),
        max_attempts=min(attempts) if attempts else 0,
    )


def stop_budget_s(registry: Registry) -> float:
    """Longest a graceful stop of the whole app can take: each level of the stop order
    waits for its slowest entry. The parent kills a child that overruns it."""
    levels = registry.levels(e.id for e in registry)
    return sum(max(registry[i].head.lifecycle.stop_timeout for i in level) for level in levels)
