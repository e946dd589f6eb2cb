"""The AMQP driver against the shared contract and a real RabbitMQ, plus what only it promises.

Every test talks to the broker at 127.0.0.1:5672 (guest/guest); nothing is mocked.
Queues get unique names and are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiormq
import pytest

import relevo
from relevo.drivers.amqp import delays
from relevo.drivers.amqp.connection import connection_url, reconnect_backoff
from relevo.drivers.amqp.driver import AmqpDriver
from relevo.drivers.amqp.settings import AmqpSettings
from relevo.drivers.base import QueueSpec
from relevo.drivers.settings import TlsSettings
from relevo.drivers.tls import ssl_context
from relevo.errors import (
    BrokerConflict,
    ConfigError,
    DriverUnavailable,
    PublishError,
    QueueNotFound,
    SettingError,
)
from relevo.message import Delivery, Outcome
from tests.amqp_cleanup import delete_ladder, delete_queues
from tests.appfiles import write_app
from tests.conftest import require_service
from tests.drivers.conformance import Collector, DriverConformance, envelope
from tests.integration import handlers
from tests.waiting import wait_until, wait_until_async

HOST, PORT = "127.0.0.1", 5672
TEST_CERT_PLACEHOLDER = "<the test certificate>"
URL = f"amqp://guest:guest@{HOST}:{PORT}/"

pytestmark = pytest.mark.broker


class QueueJanitor:
    """Deletes the queues a test created, and their delay ladders, whatever state the
    driver is in."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    async def clean(self) -> None:
        await delete_queues(self.names, URL)


@pytest.fixture
def broker() -> None:
    require_service("RabbitMQ", HOST, PORT)


@pytest.fixture
async def janitor(broker: None) -> AsyncIterator[QueueJanitor]:
    janitor = QueueJanitor()
    yield janitor
    await janitor.clean()


def settings(**overrides: Any) -> AmqpSettings:
    values: dict[str, Any] = {
        "url": URL,
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.5,
        "publish_timeout": 5.0,
    }
    return AmqpSettings.model_validate(values | overrides)


class _TrackingDriver(AmqpDriver):
    """An AmqpDriver that remembers every queue it declared, for the janitor."""

    def __init__(self, janitor: QueueJanitor, driver_settings: AmqpSettings) -> None:
        super().__init__(driver_settings)
        self._janitor = janitor

    async def declare(self, spec: QueueSpec) -> None:
        self._janitor.names.add(spec.name)
        await super().declare(spec)


class TestAmqpConformance(DriverConformance):
    @pytest.fixture
    def queue_options(self) -> Mapping[str, Any]:
        return {"durable": False}

    @pytest.fixture
    async def driver(self, janitor: QueueJanitor) -> AsyncIterator[AmqpDriver]:
        driver = _TrackingDriver(janitor, settings())
        await driver.start()
        yield driver
        await driver.stop()

    @pytest.fixture
    def unreachable_settings(self) -> dict[str, Any]:
        return {"url": "amqp://guest:guest@127.0.0.1:1/", "connection_timeout": 2}


class TestAmqpQuorumConformance(TestAmqpConformance):
    """The same contract on quorum queues (replicated, always durable)."""

    @pytest.fixture
    def queue_options(self) -> Mapping[str, Any]:
        return {"queue_type": "quorum"}

    async def bounded_queue(self, make_driver: Any, queue_options: Mapping[str, Any],
                            max_length: int) -> Any:
        pytest.skip("RabbitMQ holds a quorum queue to x-max-length only loosely: a publish "
                    "past the bound may still be accepted (never dropped), so the exact "
                    "bound checks are for classic queues")


def unique(prefix: str) -> str:
    return f"relevo-test-{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_driver(janitor: QueueJanitor) -> AsyncIterator[Callable[..., Awaitable[AmqpDriver]]]:
    """Started drivers with test settings (overridable), stopped afterwards."""
    started: list[AmqpDriver] = []

    async def make(**overrides: Any) -> AmqpDriver:
        driver = _TrackingDriver(janitor, settings(**overrides))
        await driver.start()
        started.append(driver)
        return driver

    yield make
    for driver in started:
        await driver.stop()


async def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl (the broker-side tool; this machine runs the broker)."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here (the broker runs elsewhere)")
    result = await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def connection_pids(connection_name: str) -> list[str]:
    """The broker's process IDs of the client connections with this name."""
    listing = await rabbitmqctl("list_connections", "pid", "client_properties",
                                "--no-table-headers")
    pids = [line.split("\t")[0] for line in listing.splitlines() if connection_name in line]
    assert pids, f"no connection named {connection_name!r} on the broker"
    return pids


async def close_connection_broker_side(connection_name: str) -> None:
    """Close one named client connection from the broker, as a restart or an operator would."""
    for pid in await connection_pids(connection_name):
        await rabbitmqctl("close_connection", pid, "relevo test: forced close")


# -- reconnecting ---------------------------------------------------------------------


async def test_a_connection_closed_by_the_broker_comes_back_and_work_goes_on(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    name = f"relevo-test-conn-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(connection_name=name)
    queue = unique("reconnect")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    before = [envelope(i) for i in range(5)]
    await driver.publish(queue, before)
    sink = Collector()
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(5)
    held = sink.deliveries[0]  # a handler still busy with it when the connection drops
    for delivery in sink.deliveries[1:]:
        delivery.ack()
    await wait_until(lambda: sub.in_flight == 1, 5, "acks to reach the broker")

    await close_connection_broker_side(name)
    after = [envelope(f"after-{i}") for i in range(5)]
    await driver.publish(queue, after)  # waits for the reconnect, then succeeds

    await wait_until(lambda: held.settled, 5, "the in-flight delivery to be voided")
    assert held.ack() is False, "an ack on the dead channel must do nothing"
    sink.auto = "ack"
    await wait_until(lambda: len(sink.deliveries) >= 11, 10, "redelivery and new messages")
    for delivery in sink.deliveries[5:]:
        delivery.ack()
    again = [d for d in sink.deliveries[5:] if d.id == held.id]
    assert len(again) == 1
    assert again[0].attempts == 2, "a handler had it when the connection dropped"
    assert {d.id for d in sink.deliveries[5:]} == {held.id} | {e.id for e in after}
    await wait_counts(driver, queue, message_count=0)
    await sub.close()


async def test_a_drop_in_the_middle_of_a_busy_drain_loses_nothing(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    name = f"relevo-test-conn-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(connection_name=name)
    queue = unique("busy")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    sent = [envelope(i) for i in range(3000)]
    for start in range(0, len(sent), 500):
        await driver.publish(queue, sent[start : start + 500])
    buffer: asyncio.Queue[Any] = asyncio.Queue()
    seen: set[str] = set()
    dropped = asyncio.Event()  # past 300 messages the workers hold theirs until the drop

    async def worker() -> None:
        while True:
            delivery = await buffer.get()
            await asyncio.sleep(0.002)
            if len(seen) >= 300:
                await dropped.wait()
            seen.add(delivery.id)
            delivery.ack()

    (pid,) = await connection_pids(name)
    workers = [asyncio.create_task(worker()) for _ in range(8)]
    sub = await driver.attach(queue, buffer.put_nowait, 100, {})
    await wait_until(lambda: len(seen) >= 300, 10, "the drain to get going")
    await rabbitmqctl("close_connection", pid, "relevo test: forced close")
    assert len(seen) < len(sent), "the drop must come while messages are still in flight"
    dropped.set()
    await wait_until(lambda: len(seen) == len(sent), 20, "every message handled")
    await wait_counts(driver, queue, message_count=0)
    for task in workers:
        task.cancel()
    await sub.close()


async def test_a_dropped_connection_is_one_relevo_line_each_way_and_no_client_traceback(
    make_driver: Callable[..., Awaitable[AmqpDriver]], caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: when the broker closed a connection (a frozen worker past two
    heartbeats, a restart, an operator), aiormq logged the close at ERROR and "Cancelling
    cause reader exited abnormally" at WARNING with a chained traceback, next to relevo's
    own "connection lost ... reconnecting" line."""
    caplog.set_level(logging.INFO)
    proxy = TcpProxy(HOST, PORT)
    await proxy.start()
    try:
        name = f"relevo-test-conn-{uuid.uuid4().hex[:8]}"
        driver = await make_driver(connection_name=name, reconnect_delay=0.1,
                                   url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        queue = unique("quiet")
        await driver.declare(QueueSpec(queue, {"durable": False}))
        sink = Collector(auto="ack")
        sub = await driver.attach(queue, sink, 10, {})

        def relevo_said(text: str) -> int:
            return sum(text in r.getMessage() for r in caplog.records
                       if r.name == "relevo.drivers.amqp")

        await close_connection_broker_side(name)  # the broker closes it
        await wait_until(lambda: relevo_said("restored") == 1, 10, "the first reconnect")
        await proxy.pause()  # the socket dies under the client (reset, no close frame)
        await proxy.resume()
        await wait_until(lambda: relevo_said("restored") == 2, 10, "the second reconnect")
        await driver.publish(queue, [envelope(1)])
        await sink.wait_for(1)
        await sub.close()
    finally:
        await proxy.stop()
    assert relevo_said("connection lost") == 2
    noisy = [r for r in caplog.records
             if r.name.startswith(("aiormq", "aio_pika")) and r.levelno > logging.DEBUG]
    assert noisy == [], [f"{r.levelname} {r.name}: {r.getMessage()}" for r in noisy]
    assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]


async def test_publishing_while_the_broker_is_unreachable_fails_in_time_or_waits_and_succeeds(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    proxy = TcpProxy(HOST, PORT)
    await proxy.start()
    try:
        driver = await make_driver(url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
                                   publish_timeout=0.5)
        queue = unique("unreachable")
        await driver.declare(QueueSpec(queue, {"durable": False}))
        await proxy.pause()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DriverUnavailable):
            await driver.publish(queue, [envelope(1)])
        assert loop.time() - started < 3, "a publish must give up at its timeout, never hang"

        driver.settings = driver.settings.model_copy(update={"publish_timeout": 10.0})
        waiting = asyncio.create_task(driver.publish(queue, [envelope(2)]))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the publish waits for the broker to come back"
        await proxy.resume()
        await asyncio.wait_for(waiting, 10)  # the reconnect happened and it went through
        await driver.publish(queue, [envelope(3)])
        await wait_counts(driver, queue, timeout_s=5, ready=2)
    finally:
        await proxy.stop()


# -- declaring ------------------------------------------------------------------------


async def test_by_default_queues_are_durable_and_messages_persistent(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    """What survives a broker restart: a durable queue holding persistent messages."""
    driver = await make_driver()
    queue = unique("durable")
    await driver.declare(QueueSpec(queue, {}))
    await driver.publish(queue, [envelope(1)])
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        got = await channel.basic_get(queue, no_ack=True)
        assert got.header.properties.delivery_mode == 2, "persistent"
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="durable"):
            await channel.queue_declare(queue, durable=False)  # differs: it is durable
    finally:
        await connection.close()


async def test_redeclaring_with_other_options_names_the_queue_and_the_option(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("conflict")
    await driver.declare(QueueSpec(queue, {"durable": False, "message_ttl": "1s"}))
    await driver.declare(QueueSpec(queue, {"durable": False, "message_ttl": "1s"}))  # same: fine
    with pytest.raises(BrokerConflict) as caught:
        await driver.declare(QueueSpec(queue, {"durable": False, "message_ttl": "2s"}))
    conflict = caught.value
    assert (conflict.queue, conflict.option, conflict.field) == (
        queue, "message_ttl", "driver_options.amqp.message_ttl")
    assert (conflict.theirs, conflict.ours) == ("x-message-ttl=1000", "x-message-ttl=2000")
    assert str(conflict) == (
        f"queue {queue!r} already exists on the broker with a different message_ttl "
        "(broker: x-message-ttl=1000, ours: x-message-ttl=2000); change "
        "driver_options.amqp.message_ttl to match or delete the queue")
    with pytest.raises(BrokerConflict, match="durable"):
        await driver.declare(QueueSpec(queue, {"durable": True, "message_ttl": "1s"}))
    await driver.publish(queue, [envelope(1)])  # the driver is still usable afterwards
    await wait_counts(driver, queue, message_count=1)


async def test_a_queue_deleted_behind_the_drivers_back_raises_queue_not_found(
    make_driver: Callable[..., Awaitable[AmqpDriver]], janitor: QueueJanitor
) -> None:
    driver = await make_driver()
    queue = unique("deleted")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await janitor.clean()
    with pytest.raises(QueueNotFound, match=queue):
        await driver.publish(queue, [envelope(1)])


async def test_a_consumer_whose_queue_is_deleted_declares_it_again_and_goes_on(
    make_driver: Callable[..., Awaitable[AmqpDriver]], janitor: QueueJanitor
) -> None:
    driver = await make_driver()
    queue = unique("recreated")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 5, {})
    await janitor.clean()  # an operator deletes the queue: the broker cancels the consumer

    async def consumed_again() -> bool:
        with contextlib.suppress(QueueNotFound):
            return (await driver.info(queue)).consumer_count == 1
        return False

    await wait_until_async(consumed_again, timeout_s=10, what="the consumer to come back")
    sent = envelope(1)
    await driver.publish(queue, [sent])
    await sink.wait_for(1)
    assert sink.ids == [sent.id]
    await sub.close()


# -- attempts and headers -------------------------------------------------------------


async def test_attempts_grow_with_each_nack_and_the_headers_come_back_unchanged(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("nacks")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    headers: dict[str, Any] = {"tenant": "acme", "ratio": 0.1, "count": -3, "flag": True,
                               "correlation_id": "c-9", "traceparent": "00-ab-cd-01"}
    sent = envelope(1, b"{}", **headers)
    await driver.publish(queue, [sent])
    sink = Collector()
    sub = await driver.attach(queue, sink, 5, {})
    for round_ in range(1, 5):
        await sink.wait_for(round_)
        got = sink.deliveries[-1]
        assert (got.id, got.attempts) == (sent.id, round_)
        assert got.headers == headers
        assert type(got.headers["ratio"]) is float
        got.nack() if round_ < 4 else got.ack()
    await wait_counts(driver, queue, message_count=0)
    await sub.close()


async def test_neutral_headers_are_amqp_properties_for_other_clients_and_back(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("props")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    sent = envelope(1, b"{}", correlation_id="c-1", reply_to="replies",
                    content_type="application/json", message_type="task.created",
                    encoding="utf-8", tenant="acme")
    await driver.publish(queue, [sent])
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        got = await channel.basic_get(queue, no_ack=True)
        props = got.header.properties
        assert (props.message_id, props.correlation_id, props.reply_to) == (
            sent.id, "c-1", "replies")
        assert (props.content_type, props.message_type, props.content_encoding) == (
            "application/json", "task.created", "utf-8")
        assert props.delivery_mode == 2
        assert props.timestamp is not None
        assert props.headers == {"tenant": "acme"}
        await channel.basic_publish(
            b"x", routing_key=queue,
            properties=aiormq.spec.Basic.Properties(message_id="foreign-1", correlation_id="c-2",
                                                    headers={"k": 1}),
        )
    finally:
        await connection.close()
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 5, {})
    await sink.wait_for(1)
    assert sink.deliveries[0].id == "foreign-1"
    assert sink.deliveries[0].headers == {"correlation_id": "c-2", "k": 1}
    await sub.close()


# -- crashes --------------------------------------------------------------------------


# -- prefetch and consumer options ----------------------------------------------------


async def test_prefetch_bounds_unsettled_deliveries_with_workers_acking_out_of_order(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("prefetch")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await driver.publish(queue, [envelope(i) for i in range(300)])
    buffer: asyncio.Queue[Any] = asyncio.Queue()
    unsettled = peak = handled = 0

    def sink(delivery: Any) -> None:
        nonlocal unsettled, peak
        unsettled += 1
        peak = max(peak, unsettled)
        buffer.put_nowait(delivery)

    async def worker(delay_s: float) -> None:
        nonlocal unsettled, handled
        while True:
            delivery = await buffer.get()
            await asyncio.sleep(delay_s)  # uneven handlers: acks arrive out of order
            unsettled -= 1
            handled += 1
            delivery.ack()

    workers = [asyncio.create_task(worker(d)) for d in (0, 0.001, 0.003)]
    sub = await driver.attach(queue, sink, 7, {})
    await wait_until(lambda: handled >= 300, 20, "300 handled")
    assert peak <= 7, "never more than prefetch unsettled"
    assert peak > 1, "deliveries overlap: the bound was actually exercised"
    for task in workers:
        task.cancel()
    await wait_counts(driver, queue, message_count=0)
    await sub.close()


async def test_a_long_handler_at_the_head_does_not_starve_the_consumer_of_credit(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("head")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await driver.publish(queue, [envelope(i) for i in range(60)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 8, {})
    await sink.wait_for(1)
    held = sink.deliveries[0]  # stays in its handler the whole time
    sink.auto = "ack"
    for delivery in sink.deliveries[1:]:
        delivery.ack()
    await sink.wait_for(60)  # acks behind the held head still freed the broker's credit
    assert len(sink.unsettled()) == 1
    held.ack()
    await wait_counts(driver, queue, message_count=0)
    await sub.close()


async def test_consumer_tag_and_exclusive_reach_the_broker(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("exclusive")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    tag = f"relevo-tag-{uuid.uuid4().hex[:6]}"
    first = await driver.attach(queue, Collector(), 1, {"consumer_tag": tag, "exclusive": True})
    listing = await rabbitmqctl("list_consumers", "queue_name", "consumer_tag", "prefetch_count",
                                "--no-table-headers")
    assert f"{queue}\t{tag}\t1" in listing, "tag and basic.qos as the consumer asked"
    with pytest.raises(DriverUnavailable, match="exclusive"):
        await driver.attach(queue, Collector(), 1, {})
    await first.close()


async def test_a_consume_answered_after_its_deadline_leaves_no_consumer_behind(
    make_driver: Callable[..., Awaitable[AmqpDriver]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker may register a consumer whose reply comes after attach gave up: its
    channel must close, or the messages that consumer takes wait, unseen and unsettled,
    until the connection drops."""
    driver = await make_driver()
    queue = unique("late-consume")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    consume = aiormq.Channel.basic_consume

    async def answered_too_late(channel: aiormq.Channel, *args: Any, **kwargs: Any) -> Any:
        await consume(channel, *args, **kwargs)
        raise TimeoutError  # the reply came after attach's deadline

    monkeypatch.setattr(aiormq.Channel, "basic_consume", answered_too_late)
    with pytest.raises(DriverUnavailable):
        await driver.attach(queue, Collector(), 10, {})
    monkeypatch.undo()
    await wait_counts(driver, queue, consumer_count=0)
    await driver.publish(queue, [envelope(1)])
    sink = Collector()
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(1)
    await sub.close()


# -- connection settings and TLS (no TLS server needed) -------------------------------


def test_connection_settings_shape_the_url() -> None:
    plain = connection_url(AmqpSettings.model_validate(
        {"url": "amqp://u:p@broker/", "vhost": "jobs", "heartbeat": "15s"}))
    assert (plain.scheme, plain.path, plain.query["heartbeat"]) == ("amqp", "/jobs", "15")
    tls = connection_url(AmqpSettings.model_validate(
        {"url": "amqp://u:p@broker/", "tls": {"enabled": True}}))
    assert (tls.scheme, tls.port) == ("amqps", 5671)
    kept = connection_url(AmqpSettings.model_validate(
        {"url": "amqp://u:p@broker:6000/", "tls": {"enabled": True}}))
    assert kept.port == 6000


def test_tls_settings_accept_inline_pem_and_file_paths(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text(TEST_CERT)
    (tmp_path / "key.pem").write_text(TEST_KEY)
    inline = ssl_context(TlsSettings(enabled=True, ca=TEST_CERT, cert=TEST_CERT, key=TEST_KEY,
                                     server_name="broker.internal"))
    assert inline.verify_mode == ssl.CERT_REQUIRED
    assert inline.check_hostname
    assert inline.get_ca_certs()[0]["subject"] == ((("commonName", "relevo-test"),),)
    assert getattr(inline, "server_name", None) == "broker.internal"
    files = ssl_context(TlsSettings(enabled=True, ca=f"file://{tmp_path}/cert.pem",
                                    cert=f"file://{tmp_path}/cert.pem",
                                    key=str(tmp_path / "key.pem"), insecure_skip_verify=True))
    assert files.verify_mode == ssl.CERT_NONE
    assert not files.check_hostname


@pytest.mark.parametrize(
    ("tls", "field"),
    [
        ({"ca": "file:///nonexistent/ca.pem"}, "tls.ca"),
        ({"ca": "not a certificate"}, "tls.ca"),
        ({"cert": TEST_CERT_PLACEHOLDER}, "tls.cert"),
    ],
    ids=["missing-file", "not-pem", "cert-without-key"],
)
def test_unusable_tls_settings_are_setting_errors_naming_the_field(
    tls: dict[str, str], field: str
) -> None:
    values = {k: (TEST_CERT if v == TEST_CERT_PLACEHOLDER else v) for k, v in tls.items()}
    with pytest.raises(SettingError) as caught:
        ssl_context(TlsSettings.model_validate({"enabled": True, **values}))
    assert caught.value.field == field


async def test_an_unusable_tls_file_is_a_config_error_at_the_driver_entry(
    tmp_path: Path,
) -> None:
    """Regression: it was reported in a made-up file `<amqp driver>`, without the entry."""
    path = write_app(tmp_path, """\
- name: rabbit
  kind: queue.driver.amqp
  url: amqp://guest:guest@127.0.0.1:5672/
  tls: {enabled: true, ca: "file:///nonexistent/ca.pem"}
""")
    app = relevo.load(path)
    with pytest.raises(ConfigError) as caught:
        await app.open(start=False)
    (issue,) = caught.value.issues
    assert (issue.file, issue.entry, issue.field) == (str(path), "app:rabbit", "tls.ca")
    assert issue.line is not None
    assert "cannot read" in issue.message


async def test_a_tls_handshake_against_a_plain_port_fails_start_with_driver_unavailable(
    broker: None,
) -> None:
    driver = AmqpDriver(settings(tls={"enabled": True, "insecure_skip_verify": True},
                                 connection_timeout=3))
    with pytest.raises(DriverUnavailable, match="RabbitMQ"):
        await driver.start()
    await driver.stop()


# -- helpers ----------------------------------------------------------------------------


async def wait_counts(driver: AmqpDriver, queue: str, timeout_s: float = 10.0,
                      **expected: int) -> None:
    await DriverConformance().wait_counts(driver, queue, timeout_s, **expected)


class TcpProxy:
    """A TCP relay to the broker that the test can pause (refuse and cut) and resume."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def pause(self) -> None:
        """Stop accepting and cut every open connection: the broker is 'down'."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def resume(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.pause()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}

TEST_CERT = """\
-----BEGIN CERTIFICATE-----
MIIDDzCCAfegAwIBAgIUPQDSbMiTgeEpMM/kQrtEo9FDGM4wDQYJKoZIhvcNAQEL
BQAwFjEUMBIGA1UEAwwLcmVsZXZvLXRlc3QwIBcNMjYxMTI2MTYwNTA5WhgPMjEy
NjExMDIxNjA1MDlaMBYxFDASBgNVBAMMC3JlbGV2by10ZXN0MIIBIjANBgkqhkiG
9w0BAQEFAAOCAQ8AMIIBCgKCAQEArNWzM1JYINYIjdIwSMzI19cQyAhKHgMJuqdm
F4JIrvh3fpANk82vkitIcNLTyoa+9Ns/5IxOZjVzo/0E8AgXlxBMyjBosrN7iGnC
vPIBy549n7t7y0ABNi0VseUTKOBeAZLWZ8Q+HKE4z3XFArCL5A/aqs9tFPiI2o/p
omd1kdlQZ2H6zWPHKOHA1nfzrsJuXwxF4zqKiWYGZZ4zBOirIJSK6Toq1rGsVICm
5n4HhqmD6B1uj5QbHWQUrL6pE8JAyraVQpCEgKYuAmuFo8KWCq/GNzquLvPjgw5o
BjWNpANaRj2n82ScPvypRVJIJBnuDDIuuEylA7oLFNnl599Z1wIDAQABo1MwUTAd
BgNVHQ4EFgQUGu1isVqurd/k0FTdyc3oUT2QoXMwHwYDVR0jBBgwFoAUGu1isVqu
rd/k0FTdyc3oUT2QoXMwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOC
AQEALo+wleoFuNYSLapJ9EKlDp7IV1wv5LTZIos9xGJAdxpd+M2w91BAkdzPSHTw
8v6IGwx/SGcDV6A5Gf/tjpbk+2i7YMs3I4hLhQT9saXfVm8fgvInnDsSCdkxNiGP
ezCkZt8YH6cPAKWxvtRO3aYqZhtEg6S/x25H8yb+7bJZxC3owuSo+RIXaP6RTegU
udyVLA+8OzAwBhOxT16Y8T/7ZtR0PzbW8znAz38H8HJjMLK6UZqNkTDkXpzEQkrF
5UM9OkTKxGo3Vbz74A9yzuork5xxQr6B9uhuSTwMIqlAT2PDVTDPt9FE+vKP7c3U
eCpda7fnZAkS6s3471NBzAhJfA==
-----END CERTIFICATE-----
"""

TEST_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCs1bMzUlgg1giN
0jBIzMjX1xDICEoeAwm6p2YXgkiu+Hd+kA2Tza+SK0hw0tPKhr702z/kjE5mNXOj
/QTwCBeXEEzKMGiys3uIacK88gHLnj2fu3vLQAE2LRWx5RMo4F4BktZnxD4coTjP
dcUCsIvkD9qqz20U+Ijaj+miZ3WR2VBnYfrNY8co4cDWd/Ouwm5fDEXjOoqJZgZl
njME6KsglIrpOirWsaxUgKbmfgeGqYPoHW6PlBsdZBSsvqkTwkDKtpVCkISApi4C
a4WjwpYKr8Y3Oq4u8+ODDmgGNY2kA1pGPafzZJw+/KlFUkgkGe4MMi64TKUDugsU
2eXn31nXAgMBAAECggEADp7lUeodWmnAv36QZxgrxVaELOfGnVNUd13B3StASszq
DuLQwzgbKhpPPnwXPoK3lK8XcJYN68eJyM2WpVeJ51WRqWj+8l8MjDWmK6WtUTRJ
skGB72eysoqN00a1oDeavDdXu992AaYB0Er+J4QX0Wsl7F0vtR5xNUwHT53A7F16
MLvRyO+JFl7sHBbPLO4RUHxGkEdleyNC8P1ChkM9sho9GVv3FLs5gu5jqW4ekDL7
1/1WvRKOxUMVgSeEDE3n9x2+FVX8scOanUEOhLlFox2wP/CWmE58rS+WhkI3ZdsJ
jXKf7BKpOyp/mj9tenXwPtF0FZ28Q31KRmymCIDnwQKBgQDfWcmYE2yPnmhxmG/O
SEdpbb+NiCBNiDYeEbUMLmzSqJPcn53W466HBUXfCznBkoQ4ZQmbUYLPtYFNjjXE
wWZz9dEju7UfQLQPRoA4+SxFlMpUHPtOMqcRxv5IXLV6J/r2yuNlJM65hcPQoECE
3ZZ8FGGA1QBq24BuXhRhGmc3EwKBgQDGGYIa13UXf8K1D1oBBo/JiN5Pml2S9bOB
b5tp6FGM3NqrKof9eb1ooIEIguVV6ng5pKOVcJ3cl3Qya+DwtIfuldVRnZKHPzF0
xD77IS1LFhDhZ2pLQeIzFr2TBFcuFB3XdCQUUlhRpXigRouuIcjE3YI7C3qvkor8
OB07a/6WrQKBgBt0dgtzl8yvtDcCffvldqHHE9zZ9t6Q99YKZy7wJgBfKI3eMRDR
PArs4wHf52GcGRS1ltC43FOcBCD8ci+VdnqapPK3iDQnR/r4t5pJRt/mwlhEl7+t
CkxtIaTTgJtbfsYHepxcQe0cPE3Q5R1v/6eQ+ctUY5C/GrJ2bhrhm/5xAoGBAJAy
ERooqvqn7LqOqh0FAbTZA7k9y88lObyF2MKGcJXwTNs64jIHY2+9JS9k2DppqYmL
5ebpSn8/Xz00eU+8mRV5ywTVhcscnIs6Lf3ucGGvdiocdKrDEjvN2cAh8LOBwRcL
WxfPuKn1oJBJyXK+9L0X36vK90rFiJV+4whV28MhAoGBAIhLw1NDG+ZJ1NbGO4od
bN6HxWcVbSs4eZD2f4trSa3nu8krxWrEfTwnXj+P6xWYlSaNXEAQiBd3AdhIFL73
dTItqzVKA8vNe5l9iwCQ4yBZL1wuHINbx2o4WSc8+eCjE5seVNkpCBvH3oETPBBP
cjAKyMoKwQJyihQv5NLHkzKW
-----END PRIVATE KEY-----
"""  # a throwaway self-signed pair made for these tests only


# -- the whole application on RabbitMQ ------------------------------------------------


async def test_an_app_on_rabbitmq_retries_then_dead_letters_and_stops_giving_back_the_rest(
    tmp_path: Path, janitor: QueueJanitor
) -> None:
    tasks, dead = unique("app-tasks"), unique("app-dead")
    janitor.names |= {tasks, dead}
    path = write_app(tmp_path, f"""\
        - name: rabbit
          kind: queue.driver.amqp
          url: "{URL}"
          reconnect_delay: 50ms
        - name: tasks
          kind: queue.queue
          driver: rabbit
          queue_name: {tasks}
          driver_options: {{amqp: {{durable: false}}}}
          dead_letter: {{queue: dead, max_attempts: 3}}
        - name: dead
          kind: queue.queue
          driver: rabbit
          queue_name: {dead}
          driver_options: {{amqp: {{durable: false}}}}
        - name: fn
          kind: function.python
          handler: "tests.integration.handlers:record"
        - name: worker
          kind: queue.consumer
          queue: tasks
          func: fn
          concurrency: 4
          prefetch: 8
          lifecycle: {{auto_start: true}}
        - name: dead_fn
          kind: function.python
          handler: "tests.integration.handlers:returns_error"
        - name: dead_reader
          kind: queue.consumer
          queue: dead
          func: dead_fn
          auto_ack: true
        """)
    handlers.reset()
    async with relevo.load(path) as app:
        message_id = await app.publish("app:tasks", {"id": 7, "fail": True},
                                       headers={"k": "v", "ratio": 0.1})
        await wait_until(lambda: len(handlers.state.calls) == 3, 10, "three attempts")
        await wait_until_async(
            lambda: _count_is(app, "app:dead", 1), what="the message in the dead-letter queue"
        )
        assert [c.attempts for c in handlers.state.calls] == [1, 2, 3]
        assert {c.id for c in handlers.state.calls} == {message_id}
        assert handlers.state.calls[2].headers == {"k": "v", "ratio": 0.1}
        await app.start("app:dead_reader")
        await wait_until(lambda: len(handlers.state.calls) == 4, 10, "the dead letter read")
        dead_letter = handlers.state.calls.pop()
        assert (dead_letter.id, dead_letter.attempts) == (message_id, 3)
        assert dead_letter.headers["x_original_queue"] == "app:tasks"
        assert dead_letter.headers["attempts"] == 3
        assert dead_letter.headers["ratio"] == 0.1
        await app.stop("app:dead_reader")

        await app.stop("app:worker")
        await app.publish_batch("app:tasks", [{"id": i} for i in range(5)])
        assert (await app.info("app:tasks"))["message_count"] == 5
    async with relevo.load(path) as app:  # a new process' worth of app: the five are there
        await wait_until(lambda: len(handlers.state.calls) == 8, 10, "the five handled")
        await wait_until_async(lambda: _count_is(app, "app:tasks", 0), what="tasks drained")


async def _count_is(app: relevo.App, queue: str, count: int) -> bool:
    return (await app.info(queue))["message_count"] == count


# -- delayed messages -----------------------------------------------------------------


class Arrivals:
    """A sink that records each delivery with its arrival time (epoch seconds)."""

    def __init__(self, ack: bool = True) -> None:
        self.got: list[tuple[Delivery, float]] = []
        self.ack = ack

    def __call__(self, delivery: Delivery) -> None:
        self.got.append((delivery, time.time()))
        if self.ack:
            delivery.ack()

    async def wait_for(self, count: int, timeout_s: float = 15.0) -> None:
        await wait_until(lambda: len(self.got) >= count, timeout_s, f"{count} deliveries")


async def test_a_delayed_publish_waits_in_the_broker_and_arrives_whole_and_never_early(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("delay")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    sent = [envelope(i, ratio=0.1, count=7, flag=True, correlation_id=f"c-{i}") for i in range(3)]
    due = time.time() + 1.5
    await driver.publish(queue, sent, due)

    stats = await driver.info(queue)
    assert (stats.ready, stats.delayed) == (0, 3), "waiting in the broker, not ready"
    sink = Arrivals()
    await driver.attach(queue, sink, 10, {})
    await sink.wait_for(3)

    for (delivery, arrived), original in zip(sink.got, sent, strict=True):
        assert arrived >= due, f"delivered {due - arrived:.3f}s early"
        assert (delivery.id, delivery.body, delivery.attempts) == (original.id, original.body, 1)
        assert delivery.headers == original.headers, "no x-death, types kept"
        assert type(delivery.headers["ratio"]) is float
        assert type(delivery.headers["flag"]) is bool
    await wait_counts(driver, queue, message_count=0, delayed=0)


async def test_a_due_time_in_the_past_makes_the_message_ready_at_once(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("delay-past")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await driver.publish(queue, [envelope(1)], time.time() - 60)
    await wait_counts(driver, queue, ready=1, delayed=0)


async def test_a_delayed_retry_is_stored_before_its_original_leaves_and_comes_back_after_its_time(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    """Regression: RabbitMQ drops, without a word, a message that dead-letters into a
    queue already named in its `x-death` header with no rejection in between. A retry
    copied with the headers of its delivery carried the `x-death` of the delay before
    it, so the second delayed retry through the same wait queue vanished."""
    driver = await make_driver()
    queue = unique("delay-retry")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    original = envelope(1, ratio=0.25)
    await driver.publish(queue, [original], time.time() + 0.3)
    sink = Arrivals(ack=False)
    sub = await driver.attach(queue, sink, 10, {})
    for attempt in range(1, 4):
        await sink.wait_for(attempt)
        delivery, _ = sink.got[-1]
        assert (delivery.id, delivery.attempts) == (original.id, attempt)
        assert delivery.headers == original.headers
        due = time.time() + 0.6  # the same delay each time: the same wait queues
        delivery.claim()
        sub.settle(delivery, Outcome.NACK, due)
        await wait_counts(driver, queue, message_count=0, delayed=1)
        await sink.wait_for(attempt + 1)
        assert sink.got[-1][1] >= due, "a retry came back before its time"
    sink.got[-1][0].ack()
    await wait_counts(driver, queue, message_count=0, delayed=0)


async def test_a_delayed_retry_is_counted_somewhere_at_every_moment_until_it_comes_back(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    """Regression: info() read the queue, then its ladder from the lowest level up, and
    took the consumer's in-flight count before either; a message moving down the ladder
    or into the queue (or delivered but not yet arrived) meanwhile was counted nowhere."""
    driver = await make_driver()
    queue = unique("delay-counted")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    for round_ in range(3):
        await driver.publish(queue, [envelope(round_)])
        sink = Arrivals(ack=False)
        sub = await driver.attach(queue, sink, 10, {})
        await sink.wait_for(1)
        delivery = sink.got[0][0]
        delivery.claim()
        sub.settle(delivery, Outcome.NACK, time.time() + 0.35)  # 7 units: 3 levels
        deadline = time.monotonic() + 15
        while len(sink.got) < 2:
            stats = await driver.info(queue)
            assert stats.message_count + stats.delayed >= 1, "the message was nowhere"
            assert time.monotonic() < deadline, "the retry never came back"
        sink.got[1][0].ack()
        await sub.close()
        await wait_counts(driver, queue, message_count=0, delayed=0)


async def test_a_ladder_deleted_behind_the_drivers_back_is_declared_again_on_the_next_delay(
    make_driver: Callable[..., Awaitable[AmqpDriver]], janitor: QueueJanitor,
) -> None:
    """Regression: publishing to a deleted ladder exchange is a 404 that the publisher took
    for a dropped connection, so every delayed publish to the queue retried until its
    publish timeout and failed with DriverUnavailable."""
    driver = await make_driver()
    queue = unique("delay-ladder-gone")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await driver.publish(queue, [envelope(1)], time.time() + 0.2)
    await wait_counts(driver, queue, ready=1, delayed=0)
    connection = await aiormq.connect(URL)
    try:
        await delete_ladder(connection, await connection.channel(), queue)
    finally:
        await connection.close()

    due = time.time() + 0.2
    await driver.publish(queue, [envelope(2)], due)
    await wait_counts(driver, queue, ready=2, delayed=0)
    assert time.time() >= due


async def test_another_process_counts_the_delayed_messages_of_a_ladder_it_did_not_declare(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    """Regression: the driver that found a ladder by probing counted its levels twice."""
    publisher, watcher = await make_driver(), await make_driver()
    queue = unique("delay-watched")
    await publisher.declare(QueueSpec(queue, {"durable": False}))
    await publisher.publish(queue, [envelope(i) for i in range(3)], time.time() + 30)
    await publisher.publish(queue, [envelope(9)], time.time() + 3600)
    stats = await watcher.info(queue)
    assert (stats.message_count, stats.delayed) == (0, 4)
    assert (await watcher.info(queue)).delayed == 4, "counted the same the second time"


async def test_delays_and_delayed_retries_survive_a_connection_closed_by_the_broker(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    name = f"relevo-test-conn-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(connection_name=name)
    queue = unique("delay-drop")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    waiting = [envelope(f"wait-{i}") for i in range(5)]
    await driver.publish(queue, [envelope("retry")])
    sink = Arrivals(ack=False)
    sub = await driver.attach(queue, sink, 10, {})
    await sink.wait_for(1)
    retried = sink.got[0][0]
    due = time.time() + 5  # rabbitmqctl takes seconds to start: the drop must come first
    await driver.publish(queue, waiting, due)
    retried.claim()
    sub.settle(retried, Outcome.NACK, due)
    await wait_counts(driver, queue, message_count=0, delayed=6)

    await close_connection_broker_side(name)
    assert time.time() < due, "the connection closed too late to test waiting messages"
    await sink.wait_for(7)
    arrived = {d.id: (d, t) for d, t in sink.got[1:]}
    assert sorted(arrived) == sorted([retried.id] + [e.id for e in waiting])
    assert all(t >= due for _, t in arrived.values()), "one came early"
    assert arrived[retried.id][0].attempts == 2
    for delivery, _ in arrived.values():
        delivery.ack()
    await wait_counts(driver, queue, message_count=0, delayed=0)


async def test_a_delay_of_hours_waits_in_the_high_levels_of_the_ladder(
    make_driver: Callable[..., Awaitable[AmqpDriver]],
) -> None:
    driver = await make_driver()
    queue = unique("delay-hours")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    await driver.publish(queue, [envelope(1)], time.time() + 3 * 3600)
    await wait_counts(driver, queue, ready=0, delayed=1)
    top = delays.units_for(3 * 3600).bit_length() - 1  # 216,000 units: bit 17
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        ok = await channel.queue_declare(delays.level_name(queue, top), passive=True)
        assert ok.message_count == 1
    finally:
        await connection.close()
    with pytest.raises(PublishError, match="longer than"):
        await driver.publish(queue, [envelope(2)], time.time() + delays.MAX_DELAY_S + 60)

def test_a_delay_becomes_whole_units_rounded_up_written_highest_bit_first() -> None:
    assert delays.units_for(0.05) == 1
    assert delays.units_for(0.051) == 2, "rounded up: never early"
    assert delays.units_for(0.0001) == 1
    for delay_s in (0.1, 0.3, 0.7, 1.234, 59.99, 3600.0, 86400 * 3.3):
        assert delays.units_for(delay_s) * delays.UNIT_S >= delay_s
        assert delays.units_for(delay_s) * delays.UNIT_S < delay_s + delays.UNIT_S + 1e-9
    key = delays.routing_key(13).split(".")
    assert len(key) == delays.LEVELS
    assert key[-4:] == ["1", "1", "0", "1"]
    assert set(key[:-4]) == {"0"}


def test_reconnect_waits_follow_relevos_backoff_from_reconnect_delay_up_to_its_cap() -> None:
    backoff = reconnect_backoff(settings(reconnect_delay=0.5, reconnect_max_delay=3))
    assert all(0.45 <= backoff.delay_s(1) <= 0.55 for _ in range(50))
    assert all(0.9 <= backoff.delay_s(2) <= 1.1 for _ in range(50))
    assert all(2.7 <= backoff.delay_s(20) <= 3.3 for _ in range(50))


async def test_an_app_on_rabbitmq_waits_out_its_retry_policy_in_the_broker_then_dead_letters(
    tmp_path: Path, janitor: QueueJanitor
) -> None:
    tasks, dead = unique("app-retry"), unique("app-retry-dead")
    janitor.names |= {tasks, dead}
    path = write_app(tmp_path, f"""\
        - name: rabbit
          kind: queue.driver.amqp
          url: "{URL}"
        - name: tasks
          kind: queue.queue
          driver: rabbit
          queue_name: {tasks}
          driver_options: {{amqp: {{durable: false}}}}
          retry: {{initial_delay: 300ms, factor: 2, jitter: 0}}
          dead_letter: {{queue: dead, max_attempts: 3}}
        - name: dead
          kind: queue.queue
          driver: rabbit
          queue_name: {dead}
          driver_options: {{amqp: {{durable: false}}}}
        - name: fn
          kind: function.python
          handler: "tests.integration.handlers:record"
        - name: worker
          kind: queue.consumer
          queue: tasks
          func: fn
          lifecycle: {{auto_start: true}}
        """)
    handlers.reset()
    async with relevo.load(path) as app:
        published = time.time()
        await app.publish("app:tasks", {"id": 1, "fail": True}, headers={"ratio": 0.1},
                          delay=0.4)
        assert (await app.info("app:tasks"))["delayed"] == 1
        await wait_until(lambda: len(handlers.state.calls) == 3, 15, "three attempts")
        await wait_until_async(lambda: _count_is(app, "app:dead", 1), what="the dead letter")
        calls = handlers.state.calls
        assert [c.attempts for c in calls] == [1, 2, 3]
        assert calls[0].at >= published + 0.4, "the delayed publish came early"
        assert calls[1].at - calls[0].at >= 0.3, "the first retry came early"
        assert calls[2].at - calls[1].at >= 0.6, "the second retry came early"
        assert calls[2].headers == {"ratio": 0.1}
        info = await app.info("app:tasks")
        assert (info["message_count"], info["delayed"]) == (0, 0)


async def test_a_channel_that_fails_to_open_while_resubscribing_is_tried_again(
    make_driver: Callable[..., Awaitable[AmqpDriver]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: when the link dropped again while a consumer was opening its new
    channel, the client's raw connection error killed the resubscribe task, and the
    consumer received nothing more."""
    name = f"relevo-test-conn-{uuid.uuid4().hex[:8]}"
    driver = await make_driver(connection_name=name, reconnect_delay=0.1)
    queue = unique("reopen")
    await driver.declare(QueueSpec(queue, {"durable": False}))
    sink = Collector(auto="ack")
    sub = await driver.attach(queue, sink, 10, {})
    link = sub._link
    opened = link.channel
    failures = [aiormq.exceptions.AMQPConnectionError("dropped while opening a channel")]

    async def flaky(deadline: float | None, confirms: bool = True) -> Any:
        if not confirms and failures:  # the consumer's channel, once
            raise failures.pop()
        return await opened(deadline, confirms=confirms)

    monkeypatch.setattr(link, "channel", flaky)
    await close_connection_broker_side(name)
    await wait_until(lambda: not failures, 10, "the consumer to try a channel")
    await driver.publish(queue, [envelope(1)])
    await sink.wait_for(1)
    assert not sub.failure.done()
    await sub.close()
