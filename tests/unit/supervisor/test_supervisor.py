"""Start order, stop order, timeouts and restarts, with small in-process services."""

from __future__ import annotations

import asyncio

import pytest

from relevo.backoff import Backoff
from relevo.errors import DriverUnavailable, RelevoError
from relevo.registry import Entry, Registry
from relevo.supervisor.service import Supervised
from relevo.supervisor.status import Status
from relevo.supervisor.supervisor import Supervisor
from tests.waiting import wait_until


class Recorder:
    """A service that logs its starts and stops; it can hang, fail, or crash once running."""

    def __init__(self, name: str, log: list[str], *, hang: bool = False,
                 fail_starts: int = 0) -> None:
        self.name, self.log, self.hang, self.fail_starts = name, log, hang, fail_starts
        self.crash: asyncio.Future[BaseException] | None = None

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.hang:
            await asyncio.Event().wait()
        if self.fail_starts:
            self.fail_starts -= 1
            raise RelevoError(f"{self.name} cannot start")
        self.crash = asyncio.get_running_loop().create_future()

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def wait_failure(self) -> BaseException:
        assert self.crash is not None
        return await self.crash


def entry(entry_id: str, *deps: str) -> Entry:
    return Entry(entry_id, "test", "t.yaml", 1, None, None, references=deps)  # type: ignore[arg-type]


def build(log: list[str], services: dict[str, Recorder], graph: dict[str, tuple[str, ...]],
          backoff: Backoff | None = None, timeout_s: float = 1.0) -> Supervisor:
    registry = Registry({i: entry(i, *deps) for i, deps in graph.items()})
    supervised = {
        i: Supervised(i, services.get(i) or Recorder(i, log), start_timeout_s=timeout_s,
                      stop_timeout_s=1.0, backoff=backoff or Backoff(), is_driver=i == "driver")
        for i in graph
    }
    return Supervisor(registry, supervised)


GRAPH = {"driver": (), "queue": ("driver",), "func": (), "consumer": ("queue", "func")}


async def test_dependencies_start_first_and_stop_last() -> None:
    log: list[str] = []
    supervisor = build(log, {}, GRAPH)
    await supervisor.start(["consumer"])
    assert log == ["start driver", "start func", "start queue", "start consumer"]
    log.clear()
    await supervisor.stop_all()
    assert sorted(log) == ["stop consumer", "stop driver", "stop func", "stop queue"]
    assert log.index("stop consumer") < log.index("stop queue") < log.index("stop driver")


async def test_stopping_an_entry_stops_its_dependents_first() -> None:
    log: list[str] = []
    supervisor = build(log, {}, GRAPH)
    await supervisor.start(["consumer"])
    log.clear()
    await supervisor.stop(["driver"])
    assert log == ["stop consumer", "stop queue", "stop driver"]
    assert supervisor.status("func") is Status.RUNNING


async def test_a_driver_that_does_not_start_in_time_is_unavailable_and_nothing_stays_up() -> None:
    log: list[str] = []
    hanging = Recorder("driver", log, hang=True)
    supervisor = build(log, {"driver": hanging}, GRAPH, timeout_s=0.1)
    with pytest.raises(DriverUnavailable, match=r"driver did not start within 0\.1s"):
        await supervisor.start(["consumer"])
    assert supervisor.status("driver") is Status.FAILED
    assert "stop func" in log, "entries started by the failed call are stopped again"
    assert supervisor.status("consumer") is Status.UNKNOWN


async def test_a_crashed_service_is_restarted_with_backoff() -> None:
    log: list[str] = []
    flaky = Recorder("consumer", log)
    backoff = Backoff(initial_delay_s=0.01, max_delay_s=0.05, jitter=0)
    supervisor = build(log, {"consumer": flaky}, GRAPH, backoff=backoff)
    await supervisor.start(["consumer"])
    flaky.fail_starts = 2  # the next two restarts fail, the third works
    assert flaky.crash is not None
    flaky.crash.set_result(RuntimeError("worker died"))
    await wait_until(lambda: log.count("start consumer") == 4, what="three restarts")
    await wait_until(lambda: supervisor.status("consumer") is Status.RUNNING)
    await supervisor.stop_all()


async def test_restarts_stop_after_max_attempts() -> None:
    log: list[str] = []
    flaky = Recorder("consumer", log)
    backoff = Backoff(initial_delay_s=0.01, max_delay_s=0.01, jitter=0, max_attempts=2)
    supervisor = build(log, {"consumer": flaky}, GRAPH, backoff=backoff)
    await supervisor.start(["consumer"])
    flaky.fail_starts = 5
    assert flaky.crash is not None
    flaky.crash.set_result(RuntimeError("worker died"))
    await wait_until(lambda: log.count("start consumer") == 3, what="two restarts")
    await asyncio.sleep(0.05)  # a window for a third restart that must not come
    assert log.count("start consumer") == 3
    assert supervisor.status("consumer") is Status.FAILED
