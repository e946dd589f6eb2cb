"""The driver contract, as tests. Every driver's test module subclasses `DriverConformance`.

A subclass provides the fixtures `driver` (a started driver, stopped afterwards) and
`queue_options` (options for `declare`); a driver that keeps its messages outside the
process also gives `make_driver` (started drivers sharing one store, with settings
overridden), `crash_settings` (what makes it reclaim a dead process's work soon) and
`unreachable_settings` (settings that point at nothing). Queue names are unique per
test, so a broker that keeps state between runs cannot leak messages from one test into
another. Capability flags on the driver class (`Driver.capabilities`) switch off checks
a driver honestly cannot make.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from relevo.drivers.base import Driver, QueueSpec, Subscription
from relevo.drivers.catalog import DRIVER_KINDS
from relevo.errors import DriverUnavailable, QueueFull, QueueNotFound
from relevo.message import Delivery, Envelope
from tests.waiting import wait_until

MakeDriver = Callable[..., Awaitable[Driver]]
REPO = Path(__file__).resolve().parents[2]
DELAY_S = 0.3  # how far ahead delayed checks schedule: short, but past any start-up work
CLOCK_SLACK_S = 0.002  # float rounding of due times stored by a broker


class Collector:
    """A sink that records deliveries; `auto` settles each one on arrival."""

    def __init__(self, auto: str | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.arrived: list[float] = []  # wall time of each delivery
        self.auto = auto

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.arrived.append(time.time())
        if self.auto == "ack":
            delivery.ack()

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.deliveries]

    def unsettled(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.settled]

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        await wait_until(
            lambda: len(self.deliveries) >= count, timeout_s, f"{count} deliveries"
        )


def envelope(n: int | str, body: bytes | None = None, **headers: Any) -> Envelope:
    return Envelope(
        f"m-{n}-{uuid.uuid4().hex[:8]}",
        body if body is not None else f"body-{n}".encode(),
        dict(headers) or None,
    )


class DriverConformance:
    """One contract every driver passes. Subclass it and provide the fixtures below."""

    @pytest.fixture
    def queue_options(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    async def queue(self, driver: Driver, queue_options: Mapping[str, Any]) -> str:
        name = f"conformance-{uuid.uuid4().hex[:12]}"
        await driver.declare(QueueSpec(name, queue_options))
        return name

    async def attach(
        self, driver: Driver, queue: str, sink: Collector, prefetch: int = 10
    ) -> Subscription:
        return await driver.attach(queue, sink, prefetch, {})

    async def wait_counts(
        self, driver: Driver, queue: str, timeout_s: float = 10.0, **expected: int
    ) -> None:
        """Wait until info() reports the expected counts (brokers report them lazily)."""
        last: dict[str, int] = {}

        async def poll() -> bool:
            nonlocal last
            last = (await driver.info(queue)).as_dict()
            return all(last[key] == value for key, value in expected.items())

        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await poll():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"counts never became {expected}; last seen {last}")
            await asyncio.sleep(0.02)

    # -- publish, deliver, settle ---------------------------------------------------

    async def test_a_published_message_is_delivered_and_acked_away(
        self, driver: Driver, queue: str
    ) -> None:
        sent = envelope(1)
        await driver.publish(queue, [sent])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        delivery = sink.deliveries[0]
        assert (delivery.id, delivery.body, delivery.attempts) == (sent.id, sent.body, 1)
        assert delivery.ack() is True
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    async def test_messages_arrive_in_publish_order_for_one_consumer(
        self, driver: Driver, queue: str
    ) -> None:
        sent = [envelope(i) for i in range(20)]
        await driver.publish(queue, sent[:10])
        for item in sent[10:]:
            await driver.publish(queue, [item])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=5)
        await sink.wait_for(20)
        assert sink.ids == [e.id for e in sent]
        await sub.close()

    async def test_a_nacked_message_comes_back_with_the_same_id_and_one_more_attempt(
        self, driver: Driver, queue: str
    ) -> None:
        sent = envelope(1)
        await driver.publish(queue, [sent])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.deliveries[0].nack() is True
        await sink.wait_for(2)
        again = sink.deliveries[1]
        assert (again.id, again.body, again.attempts) == (sent.id, sent.body, 2)
        again.ack()
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    async def test_a_nacked_message_goes_behind_those_already_waiting(
        self, driver: Driver, queue: str
    ) -> None:
        first, second = envelope(1), envelope(2)
        await driver.publish(queue, [first, second])
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        sink.deliveries[0].nack()
        await sink.wait_for(2)
        sink.deliveries[1].ack()
        await sink.wait_for(3)
        sink.deliveries[2].ack()
        assert sink.ids == [first.id, second.id, first.id]
        await sub.close()

    async def test_a_durable_driver_keeps_messages_across_its_own_restart(
        self, driver: Driver, queue: str
    ) -> None:
        if not driver.capabilities.durable:
            pytest.skip("this driver keeps nothing across a restart")
        sent = envelope(1)
        await driver.publish(queue, [sent])
        await driver.stop()
        await driver.start()
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.ids == [sent.id]
        await sub.close()

    async def test_a_released_message_comes_back_without_counting_an_attempt(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(1)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.deliveries[0].release() is True
        await sink.wait_for(2)
        assert sink.deliveries[1].attempts == 1
        sink.deliveries[1].ack()
        await sub.close()

    async def test_an_envelope_carries_its_attempts_so_far(
        self, driver: Driver, queue: str
    ) -> None:
        sent = Envelope(f"dl-{uuid.uuid4().hex}", b"{}", {"attempts": 3}, attempts=2)
        await driver.publish(queue, [sent])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.deliveries[0].attempts == 3
        await sub.close()

    async def test_settling_twice_does_nothing_the_second_time(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(1), envelope(2)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(2)
        first, second = sink.deliveries
        assert (first.ack(), first.ack(), first.nack()) == (True, False, False)
        assert (second.nack(), second.ack(), second.nack()) == (True, False, False)
        await sink.wait_for(3)
        assert sink.deliveries[2].id == second.id
        sink.deliveries[2].ack()
        await self.wait_counts(driver, queue, message_count=0)
        assert len(sink.deliveries) == 3
        await sub.close()

    async def test_a_delivery_can_be_acked_from_another_thread(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(1)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        results: list[bool] = []
        thread = threading.Thread(target=lambda: results.append(sink.deliveries[0].ack()))
        thread.start()
        await asyncio.to_thread(thread.join)
        assert results == [True]
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    # -- bodies and headers ---------------------------------------------------------

    @pytest.mark.parametrize(
        "body",
        [
            "héllo wörld ✓ 漢字 🚀".encode(),
            bytes(range(256)),
            b"",
            b"x" * (1024 * 1024),
        ],
        ids=["unicode", "all-bytes", "empty", "1MB"],
    )
    async def test_bodies_arrive_byte_for_byte(
        self, driver: Driver, queue: str, body: bytes
    ) -> None:
        await driver.publish(queue, [envelope(1, body)])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.deliveries[0].body == body
        await sub.close()

    async def test_custom_and_neutral_headers_keep_their_values_and_types(
        self, driver: Driver, queue: str
    ) -> None:
        headers: dict[str, Any] = {
            "tenant": "acme",
            "priority": 7,
            "ratio": 0.25,
            "urgent": True,
            "quiet": False,
            "zero": 0,
            "unicode": "ñandú",
            "correlation_id": "c-1",
            "reply_to": "replies",
            "content_type": "application/json",
            "message_type": "task.created",
            "encoding": "utf-8",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        await driver.publish(queue, [envelope(1, b"{}", **headers)])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        got = sink.deliveries[0].headers
        for key, value in headers.items():
            assert key in got, key
            assert got[key] == value, key
            assert type(got[key]) is type(value), (key, got[key])
        await sub.close()

    async def test_a_message_without_headers_has_an_empty_header_map(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(1)])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        assert sink.deliveries[0].headers == {}
        await sub.close()

    # -- queues and counts ----------------------------------------------------------

    async def test_queues_do_not_see_each_others_messages(
        self, driver: Driver, queue: str, queue_options: Mapping[str, Any]
    ) -> None:
        other = f"conformance-{uuid.uuid4().hex[:12]}"
        await driver.declare(QueueSpec(other, queue_options))
        await driver.publish(queue, [envelope("a")])
        await driver.publish(other, [envelope("b1"), envelope("b2")])
        sink_a, sink_b = Collector(auto="ack"), Collector(auto="ack")
        sub_a = await self.attach(driver, queue, sink_a)
        sub_b = await self.attach(driver, other, sink_b)
        await sink_a.wait_for(1)
        await sink_b.wait_for(2)
        assert [i.split("-")[1] for i in sink_a.ids] == ["a"]
        assert sorted(i.split("-")[1] for i in sink_b.ids) == ["b1", "b2"]
        await sub_a.close()
        await sub_b.close()

    async def test_declaring_twice_keeps_the_queue_and_its_messages(
        self, driver: Driver, queue: str, queue_options: Mapping[str, Any]
    ) -> None:
        await driver.publish(queue, [envelope(1)])
        await driver.declare(QueueSpec(queue, queue_options))
        await self.wait_counts(driver, queue, message_count=1)

    async def test_info_counts_ready_in_flight_and_consumers(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(i) for i in range(5)])
        await self.wait_counts(driver, queue, message_count=5, ready=5, consumer_count=0)
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=2)
        await sink.wait_for(2)
        expected = {"message_count": 5, "consumer_count": 1}
        if driver.capabilities.exact_in_flight:
            expected |= {"ready": 3, "in_flight": 2}
        await self.wait_counts(driver, queue, **expected)
        for delivery in sink.deliveries[:2]:
            delivery.ack()
        await sink.wait_for(4)
        await sub.close()
        await self.wait_counts(driver, queue, message_count=3, consumer_count=0)

    async def test_an_unknown_queue_raises_queue_not_found(self, driver: Driver) -> None:
        missing = f"missing-{uuid.uuid4().hex[:12]}"
        with pytest.raises(QueueNotFound):
            await driver.publish(missing, [envelope(1)])
        with pytest.raises(QueueNotFound):
            await driver.info(missing)
        with pytest.raises(QueueNotFound):
            await driver.attach(missing, Collector(), 1, {})

    # -- consumers come and go ------------------------------------------------------

    async def test_messages_published_before_any_consumer_are_delivered_later(
        self, driver: Driver, queue: str
    ) -> None:
        sent = [envelope(i) for i in range(3)]
        await driver.publish(queue, sent)
        await asyncio.sleep(0)
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(3)
        assert sorted(sink.ids) == sorted(e.id for e in sent)
        await sub.close()

    async def test_closing_gives_unsettled_deliveries_back_for_the_next_consumer(
        self, driver: Driver, queue: str
    ) -> None:
        sent = [envelope(i) for i in range(4)]
        await driver.publish(queue, sent)
        first = Collector()
        sub = await self.attach(driver, queue, first, prefetch=4)
        await first.wait_for(4)
        first.deliveries[0].ack()
        await sub.close()
        assert first.deliveries[1].ack() is False, "a given-back delivery must be void"
        second = Collector(auto="ack")
        sub2 = await self.attach(driver, queue, second)
        await second.wait_for(3)
        assert sorted(second.ids) == sorted(e.id for e in sent[1:])
        assert all(d.attempts == 2 for d in second.deliveries)
        await sub2.close()

    async def test_cancel_stops_new_deliveries_but_keeps_settling(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(i) for i in range(3)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        await sub.cancel()
        assert sink.deliveries[0].ack() is True
        await self.wait_counts(driver, queue, message_count=2)
        assert len(sink.deliveries) == 1
        await sub.close()

    async def test_rapid_attach_and_close_loses_nothing(self, driver: Driver, queue: str) -> None:
        sent = [envelope(i) for i in range(30)]
        await driver.publish(queue, sent)
        for _ in range(10):
            sub = await self.attach(driver, queue, Collector(), prefetch=3)
            await sub.close()
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=10)
        await sink.wait_for(30)
        assert sorted(set(sink.ids)) == sorted(e.id for e in sent)
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    async def test_competing_consumers_share_the_queue_each_message_once(
        self, driver: Driver, queue: str
    ) -> None:
        sinks = [Collector(auto="ack"), Collector(auto="ack")]
        subs = [await self.attach(driver, queue, sink, prefetch=1) for sink in sinks]
        sent = [envelope(i) for i in range(100)]
        await driver.publish(queue, sent)
        await wait_until(lambda: sum(len(s.deliveries) for s in sinks) >= 100, 10, "100")
        got = [i for s in sinks for i in s.ids]
        assert sorted(got) == sorted(e.id for e in sent)
        assert all(s.deliveries for s in sinks), "both consumers should get work"
        for sub in subs:
            await sub.close()

    async def test_never_more_than_prefetch_unsettled_deliveries(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(i) for i in range(12)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=3)
        await sink.wait_for(3)
        await asyncio.sleep(0.2)  # give an over-eager driver the chance to over-deliver
        assert len(sink.unsettled()) == 3
        for _ in range(3):
            count = len(sink.deliveries)
            for delivery in sink.unsettled():
                delivery.ack()
            await sink.wait_for(count + 3)
            assert len(sink.unsettled()) <= 3
        await sub.close()

    # -- volume ---------------------------------------------------------------------

    async def test_concurrent_publishers_lose_and_duplicate_nothing(
        self, driver: Driver, queue: str
    ) -> None:
        batches = [[envelope(f"{p}.{i}") for i in range(20)] for p in range(25)]

        async def publisher(batch: list[Envelope]) -> None:
            for item in batch:
                await driver.publish(queue, [item])

        await asyncio.gather(*(publisher(b) for b in batches))
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=50)
        await sink.wait_for(500)
        assert sorted(sink.ids) == sorted(e.id for b in batches for e in b)
        await sub.close()

    async def test_a_high_volume_drains_completely(self, driver: Driver, queue: str) -> None:
        sent = [envelope(i) for i in range(5000)]
        for start in range(0, len(sent), 500):
            await driver.publish(queue, sent[start : start + 500])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=100)
        await sink.wait_for(5000, timeout_s=60)
        assert len(set(sink.ids)) == 5000
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    # -- peek, remove, purge ----------------------------------------------------------

    async def test_peek_shows_ready_messages_oldest_first_and_consumes_nothing(
        self, driver: Driver, queue: str
    ) -> None:
        sent = [envelope(i, tag=f"t{i}", num=i) for i in range(5)]
        sent[2].attempts = 3
        await driver.publish(queue, sent)
        seen = await driver.peek(queue, 10)
        assert [(e.id, e.body, e.headers, e.attempts) for e in seen] == [
            (e.id, e.body, e.headers, e.attempts) for e in sent
        ]
        assert [e.id for e in await driver.peek(queue, 10)] == [e.id for e in sent]
        await self.wait_counts(driver, queue, ready=5)
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(5)
        assert sink.ids == [e.id for e in sent]
        if driver.capabilities.quiet_peek:
            assert [d.attempts for d in sink.deliveries] == [1, 1, 4, 1, 1]
        await sub.close()

    async def test_peek_pages_through_a_queue_with_after(self, driver: Driver, queue: str) -> None:
        sent = [envelope(i) for i in range(7)]
        await driver.publish(queue, sent)
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = await driver.peek(queue, 3, after)
            if not page:
                break
            pages.append([e.id for e in page])
            after = page[-1].id
        ids = [e.id for e in sent]
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]

    async def test_peek_leaves_out_messages_in_flight(self, driver: Driver, queue: str) -> None:
        sent = [envelope(i) for i in range(3)]
        await driver.publish(queue, sent)
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        assert [e.id for e in await driver.peek(queue, 10)] == [e.id for e in sent[1:]]
        sink.deliveries[0].ack()
        await sub.close()

    async def test_remove_deletes_only_the_named_ready_messages(
        self, driver: Driver, queue: str
    ) -> None:
        sent = [envelope(i) for i in range(5)]
        await driver.publish(queue, sent)
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)  # sent[0] is in flight: not removable
        removed = await driver.remove(queue, [sent[0].id, sent[1].id, sent[3].id, "no-such-id"])
        assert removed == 2
        assert [e.id for e in await driver.peek(queue, 10)] == [sent[2].id, sent[4].id]
        await sub.cancel()
        sink.deliveries[0].ack()
        await sub.close()
        await self.wait_counts(driver, queue, message_count=2)

    async def test_purge_removes_every_ready_message_and_says_how_many(
        self, driver: Driver, queue: str
    ) -> None:
        await driver.publish(queue, [envelope(i) for i in range(4)])
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        assert await driver.purge(queue) == 3
        assert await driver.peek(queue, 10) == []
        sink.deliveries[0].nack()  # the one in flight survives the purge
        await sink.wait_for(2)
        assert sink.deliveries[1].id == sink.deliveries[0].id
        sink.deliveries[1].ack()
        await sub.close()
        await self.wait_counts(driver, queue, message_count=0)

    async def test_peek_remove_and_purge_on_an_unknown_queue_raise_queue_not_found(
        self, driver: Driver
    ) -> None:
        name = f"missing-{uuid.uuid4().hex[:12]}"
        with pytest.raises(QueueNotFound):
            await driver.peek(name, 10)
        with pytest.raises(QueueNotFound):
            await driver.remove(name, ["x"])
        with pytest.raises(QueueNotFound):
            await driver.purge(name)

    # -- delays (capabilities.delays) -----------------------------------------------

    def require_delays(self, driver: Driver) -> None:
        if not driver.capabilities.delays:
            pytest.skip("this driver cannot hold delayed messages")

    async def test_a_delayed_message_keeps_id_headers_and_attempts_and_is_never_early(
        self, driver: Driver, queue: str
    ) -> None:
        self.require_delays(driver)
        sent = envelope(1, correlation_id="c-1", count=7)
        sent.attempts = 2
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        due = time.time() + DELAY_S
        await driver.publish(queue, [sent], due)
        await sink.wait_for(1)
        delivery = sink.deliveries[0]
        assert sink.arrived[0] >= due - CLOCK_SLACK_S, f"{due - sink.arrived[0]:.3f}s early"
        assert (delivery.id, delivery.body, delivery.attempts) == (sent.id, sent.body, 3)
        assert delivery.headers == {"correlation_id": "c-1", "count": 7}
        delivery.ack()
        await self.wait_counts(driver, queue, message_count=0, delayed=0)
        await sub.close()

    async def test_a_delayed_message_is_apart_from_message_count_until_due_then_ready(
        self, driver: Driver, queue: str
    ) -> None:
        """Counted as `delayed` while it waits; once due it counts as ready, consumer or not."""
        self.require_delays(driver)
        due = time.time() + DELAY_S
        await driver.publish(queue, [envelope(1), envelope(2)], due)
        stats = await driver.info(queue)
        assert (stats.message_count, stats.delayed) == (0, 2)
        assert stats.next_due is None or abs(stats.next_due - due) < 0.01
        await self.wait_counts(driver, queue, ready=2, delayed=0)
        assert time.time() >= due - CLOCK_SLACK_S

    async def test_a_due_time_in_the_past_is_ready_at_once(
        self, driver: Driver, queue: str
    ) -> None:
        self.require_delays(driver)
        await driver.publish(queue, [envelope(1)], time.time() - 60)
        await self.wait_counts(driver, queue, ready=1, delayed=0, timeout_s=2)

    async def test_a_delayed_nack_stores_the_copy_before_the_original_leaves(
        self, driver: Driver, queue: str
    ) -> None:
        """At no moment between the nack and its due time is the message in neither place."""
        self.require_delays(driver)
        sent = envelope(1, k="v")
        await driver.publish(queue, [sent])
        sink = Collector()
        sub = await self.attach(driver, queue, sink)
        await sink.wait_for(1)
        due = time.time() + DELAY_S
        driver_delay = due - time.time()
        assert sink.deliveries[0].nack("retry me", delay=driver_delay) is True
        while len(sink.deliveries) < 2:
            stats = await driver.info(queue)
            assert stats.message_count + stats.delayed >= 1, "the message was nowhere"
            await asyncio.sleep(0.01)
            assert time.time() < due + 10, "never came back"
        again = sink.deliveries[1]
        assert (again.id, again.attempts, again.headers) == (sent.id, 2, {"k": "v"})
        assert sink.arrived[1] >= due - CLOCK_SLACK_S, f"{due - sink.arrived[1]:.3f}s early"
        again.ack()
        await self.wait_counts(driver, queue, message_count=0, delayed=0)
        await sub.close()

    async def test_competing_consumers_get_each_delayed_message_once(
        self, driver: Driver, queue: str
    ) -> None:
        self.require_delays(driver)
        sinks = [Collector(auto="ack"), Collector(auto="ack"), Collector(auto="ack")]
        subs = [await self.attach(driver, queue, sink, prefetch=5) for sink in sinks]
        sent = [envelope(i) for i in range(30)]
        due = time.time() + DELAY_S
        await driver.publish(queue, sent[:15], due)
        await driver.publish(queue, sent[15:], due + 0.1)
        await wait_until(lambda: sum(len(s.deliveries) for s in sinks) >= 30, 10, "30")
        await self.wait_counts(driver, queue, message_count=0, delayed=0)
        assert min(t for s in sinks for t in s.arrived) >= due - CLOCK_SLACK_S
        got = [i for s in sinks for i in s.ids]
        assert sorted(got) == sorted(e.id for e in sent)
        for sub in subs:
            await sub.close()

    async def test_peek_and_purge_leave_delayed_messages_alone(
        self, driver: Driver, queue: str
    ) -> None:
        if not driver.capabilities.delays:
            pytest.skip("this driver keeps no delayed messages")
        ready, waiting = envelope("ready"), envelope("waiting")
        await driver.publish(queue, [ready])
        await driver.publish(queue, [waiting], due=time.time() + 3600)
        assert [e.id for e in await driver.peek(queue, 10)] == [ready.id]
        assert await driver.remove(queue, [waiting.id]) == 0
        assert await driver.purge(queue) == 1
        await self.wait_counts(driver, queue, ready=0, delayed=1)

    # -- bounded queues (capabilities.bounded) ----------------------------------------

    async def bounded_queue(self, make_driver: MakeDriver, queue_options: Mapping[str, Any],
                            max_length: int) -> tuple[Driver, str]:
        driver = await make_driver(publish_timeout=0.3)
        if not driver.capabilities.bounded:
            pytest.skip("this driver has no bounded queues")
        name = f"conformance-bounded-{uuid.uuid4().hex[:12]}"
        await driver.declare(QueueSpec(name, {**queue_options, "max_length": max_length}))
        return driver, name

    async def test_a_full_queue_makes_the_publisher_wait_for_room(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any]
    ) -> None:
        driver, queue = await self.bounded_queue(make_driver, queue_options, 2)
        driver.settings = driver.settings.model_copy(  # type: ignore[attr-defined]
            update={"publish_timeout": 10.0})
        await driver.publish(queue, [envelope(1), envelope(2)])
        waiting = asyncio.create_task(driver.publish(queue, [envelope(3)]))
        await asyncio.sleep(0.1)
        assert not waiting.done(), "a publish into a full queue waits for room"
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        sink.deliveries[0].ack()
        await asyncio.wait_for(waiting, 10)
        await self.wait_counts(driver, queue, message_count=2)
        await sub.close()

    async def test_a_queue_that_stays_full_refuses_with_queue_full_and_keeps_its_messages(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any]
    ) -> None:
        driver, queue = await self.bounded_queue(make_driver, queue_options, 2)
        first = [envelope(1), envelope(2)]
        await driver.publish(queue, first)
        with pytest.raises(QueueFull, match=queue):
            await driver.publish(queue, [envelope(3)])
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=5)
        await sink.wait_for(2)
        assert sink.ids == [e.id for e in first], "the oldest messages are never dropped"
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    async def test_a_nack_into_a_full_queue_gives_the_message_back_instead_of_losing_it(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any]
    ) -> None:
        driver, queue = await self.bounded_queue(make_driver, queue_options, 2)
        first = envelope(1)
        await driver.publish(queue, [first])
        sink = Collector()
        sub = await self.attach(driver, queue, sink, prefetch=1)
        await sink.wait_for(1)
        others: list[str] = []
        while len(others) < 3:  # fill it, by the driver's own count: no room for a copy
            other = envelope(f"other{len(others)}")
            try:
                await driver.publish(queue, [other])
            except QueueFull:
                break
            others.append(other.id)
        sink.auto = "ack"
        assert sink.deliveries[0].nack() is True
        await sink.wait_for(2 + len(others))
        await self.wait_counts(driver, queue, message_count=0)
        again = [d for d in sink.deliveries[1:] if d.id == first.id]
        assert [d.attempts for d in again] == [2], "back once, the failed attempt counted"
        assert sorted(sink.ids[1:]) == sorted([first.id, *others])
        await sub.close()

    # -- outages and crashes (drivers that keep messages outside the process) ------------

    @pytest.fixture
    def crash_settings(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    def unreachable_settings(self) -> Mapping[str, Any] | None:
        return None

    async def test_an_unreachable_broker_fails_start_with_driver_unavailable_in_time(
        self, make_driver: MakeDriver, unreachable_settings: Mapping[str, Any] | None
    ) -> None:
        if unreachable_settings is None:
            pytest.skip("this driver has no broker to miss")
        started = time.monotonic()
        with pytest.raises(DriverUnavailable):
            await make_driver(**unreachable_settings)
        assert time.monotonic() - started < 5, "start must give up, never hang"

    async def crash_queue(self, make_driver: MakeDriver, queue_options: Mapping[str, Any],
                          crash_settings: Mapping[str, Any]) -> tuple[Driver, str]:
        driver = await make_driver(**crash_settings)
        if not driver.capabilities.durable:
            pytest.skip("this driver keeps nothing another process could take over")
        name = f"conformance-crash-{uuid.uuid4().hex[:12]}"
        await driver.declare(QueueSpec(name, queue_options))
        return driver, name

    async def test_messages_a_sigkilled_worker_held_come_back_each_counting_an_attempt(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any],
        crash_settings: Mapping[str, Any],
    ) -> None:
        driver, queue = await self.crash_queue(make_driver, queue_options, crash_settings)
        sent = [envelope(i) for i in range(20)]
        await driver.publish(queue, sent)
        for attempts in (1, 2):  # the same messages kill two workers in a row
            (line,) = await run_worker(driver, queue, 20, "hold", lines=1)
            assert line == "holding " + ",".join([str(attempts)] * 20)
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=50)
        await sink.wait_for(20, timeout_s=20)
        assert sorted(sink.ids) == sorted(e.id for e in sent)
        assert {d.attempts for d in sink.deliveries} == {3}, "each crash counted one attempt"
        await self.wait_counts(driver, queue, message_count=0)
        await sub.close()

    async def test_a_sigkilled_worker_loses_no_stored_retry_and_none_comes_early(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any],
        crash_settings: Mapping[str, Any],
    ) -> None:
        driver, queue = await self.crash_queue(make_driver, queue_options, crash_settings)
        self.require_delays(driver)
        failing = [envelope(f"fail{i}") for i in range(10)]
        await driver.publish(queue, failing)
        waiting = [envelope(f"wait{i}") for i in range(10)]
        wait_due = time.time() + 2.0
        await driver.publish(queue, waiting, wait_due)
        retry_due = time.time() + 2.5
        (line,) = await run_worker(driver, queue, 10, "retry", lines=1, due=retry_due)
        assert line.startswith("retried "), line
        retried = set(line.split()[1].split(","))
        assert retried == {e.id for e in failing}
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=50)
        await sink.wait_for(20, timeout_s=20)
        due_of = {e.id: wait_due for e in waiting} | {e.id: retry_due for e in failing}
        assert sorted(sink.ids) == sorted(due_of), "each exactly once"
        for delivery, arrived in zip(sink.deliveries, sink.arrived, strict=True):
            assert arrived >= due_of[delivery.id] - CLOCK_SLACK_S, f"{delivery.id} came early"
            assert delivery.attempts == (2 if delivery.id in retried else 1)
        await self.wait_counts(driver, queue, message_count=0, delayed=0)
        await sub.close()

    @pytest.mark.slow
    async def test_workers_killed_under_load_lose_nothing(
        self, make_driver: MakeDriver, queue_options: Mapping[str, Any],
        crash_settings: Mapping[str, Any],
    ) -> None:
        driver, queue = await self.crash_queue(make_driver, queue_options, crash_settings)
        sent = [envelope(i) for i in range(3000)]
        await driver.publish(queue, sent[:1000])
        workers = [await start_worker(driver, queue, 50, "ack") for _ in range(2)]
        handled: set[str] = set()

        async def read(process: asyncio.subprocess.Process) -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                word, _, message_id = raw.decode().strip().partition(" ")
                if word == "handled":
                    handled.add(message_id)

        async def publish_the_rest() -> None:  # publishing goes on while they work
            for start in range(1000, 3000, 100):
                await driver.publish(queue, sent[start : start + 100])

        readers = [asyncio.create_task(read(worker)) for worker in workers]
        publishing = asyncio.create_task(publish_the_rest())
        try:
            await wait_until(lambda: len(handled) >= 500, 30, "500 handled by the workers")
        finally:
            for worker in workers:
                worker.kill()  # SIGKILL mid-stream: claimed, handled, not yet acked
                await worker.wait()
            await asyncio.gather(*readers)
            await publishing
        assert len(handled) < len(sent), "killed before the end"
        sink = Collector(auto="ack")
        sub = await self.attach(driver, queue, sink, prefetch=100)
        await self.wait_counts(driver, queue, timeout_s=30, message_count=0, delayed=0)
        assert handled | set(sink.ids) == {e.id for e in sent}
        await sub.close()


def driver_kind(driver: Driver) -> str:
    """The catalog kind of a driver (or of the driver class a test subclassed)."""
    for cls in type(driver).__mro__:
        for kind in DRIVER_KINDS.values():
            if kind.factory == f"{cls.__module__}:{cls.__name__}":
                return kind.kind
    raise AssertionError(f"{type(driver).__name__} is in no driver kind")


async def start_worker(driver: Driver, queue: str, prefetch: int, mode: str,
                       due: float | None = None) -> asyncio.subprocess.Process:
    """A `tests.drivers.worker` process sharing the store of `driver`."""
    settings = driver.settings.model_dump(mode="json", by_alias=True)  # type: ignore[attr-defined]
    extra = [repr(due)] if due is not None else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.drivers.worker", driver_kind(driver),
        json.dumps(settings), queue, str(prefetch), mode, *extra,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )
    if mode == "ack":
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.strip() == b"ready", line
    return process


async def run_worker(driver: Driver, queue: str, prefetch: int, mode: str, lines: int,
                     due: float | None = None) -> list[str]:
    """Start a worker, read its first `lines` lines, then SIGKILL it."""
    process = await start_worker(driver, queue, prefetch, mode, due)
    assert process.stdout is not None
    got: list[str] = []
    try:
        for _ in range(lines):
            got.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip())
    finally:
        process.kill()  # SIGKILL: no cleanup, no goodbye to the broker
        await process.wait()
    return got
