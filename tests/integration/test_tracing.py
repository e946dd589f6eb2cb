"""OpenTelemetry spans: publish -> process -> onward publish, linked by `traceparent`,
on every driver; and nothing installed without a tracer provider."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import relevo
from relevo.tracing.install import tracing_middleware
from tests.appfiles import write_app
from tests.integration import handlers
from tests.integration.test_every_driver import QUEUE_OPTIONS, driver_yaml  # noqa: F401
from tests.waiting import wait_until

SYSTEMS = {"memory": "memory", "amqp": "rabbitmq", "redis": "redis", "postgres": "postgresql"}


def chain_app(tmp_path: Path, driver: str, first_handler: str = "async_forward") -> Path:
    suffix = uuid.uuid4().hex[:10]
    return write_app(tmp_path, driver + f"""\
- name: first
  kind: queue.queue
  driver: broker
  queue_name: first-{suffix}
  {QUEUE_OPTIONS}
- name: second
  kind: queue.queue
  driver: broker
  queue_name: second-{suffix}
  {QUEUE_OPTIONS}
- name: fn_first
  kind: function.python
  handler: "tests.integration.handlers:{first_handler}"
- name: fn_second
  kind: function.python
  handler: "tests.integration.handlers:record"
- name: step1
  kind: queue.consumer
  queue: first
  func: fn_first
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
- name: step2
  kind: queue.consumer
  queue: second
  func: fn_second
  lifecycle: {{auto_start: true, stop_timeout: 5s}}
""")


def traced(path: Path) -> tuple[relevo.App, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = relevo.load(path)
    middleware = tracing_middleware(app.registry, provider.get_tracer("test"))
    assert middleware is not None
    app.middlewares.append(middleware)
    return app, exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_a_trace_runs_from_publish_through_process_to_the_onward_publish(
    tmp_path: Path, driver_yaml: str  # noqa: F811
) -> None:
    kind = driver_yaml.split("queue.driver.", 1)[1].split()[0]
    app, exporter = traced(chain_app(tmp_path, driver_yaml))
    async with app:
        message_id = await app.publish("app:first", {"forward": "app:second"})
        await wait_until(lambda: len(handlers.state.calls) == 2, 15, "both steps handled")
        await wait_until(lambda: len(exporter.get_finished_spans()) == 4, 5, "four spans")
    spans = exporter.get_finished_spans()
    publish1 = named(spans, "publish app:first")
    process1 = named(spans, "process app:first")
    publish2 = named(spans, "publish app:second")
    process2 = named(spans, "process app:second")
    assert publish1.kind is SpanKind.PRODUCER
    assert process1.kind is SpanKind.CONSUMER
    assert publish1.parent is None
    assert process1.parent is not None
    assert process1.parent.span_id == publish1.context.span_id
    assert publish2.parent is not None
    assert publish2.parent.span_id == process1.context.span_id
    assert process2.parent is not None
    assert process2.parent.span_id == publish2.context.span_id
    assert len({s.context.trace_id for s in spans}) == 1
    assert dict(publish1.attributes or {}).items() >= {
        "messaging.system": SYSTEMS[kind],
        "messaging.destination.name": "app:first",
        "messaging.message.id": message_id,
        "messaging.operation.type": "send",
    }.items()
    assert dict(process1.attributes or {}).items() >= {
        "messaging.system": SYSTEMS[kind],
        "messaging.destination.name": "app:first",
        "messaging.message.id": message_id,
        "messaging.operation.type": "process",
    }.items()
    first_call = handlers.state.calls[0]
    assert first_call.headers["traceparent"].split("-")[2] == format(
        publish1.context.span_id, "016x"
    )


async def test_a_handler_running_in_a_thread_publishes_inside_its_process_span(
    tmp_path: Path,
) -> None:
    driver = "- name: broker\n  kind: queue.driver.memory\n"
    app, exporter = traced(chain_app(tmp_path, driver, "sync_record"))
    async with app:
        await app.publish("app:first", {"forward": "app:second"})
        await wait_until(lambda: len(handlers.state.calls) == 2, 10, "both steps handled")
        await wait_until(lambda: len(exporter.get_finished_spans()) == 4, 5, "four spans")
    spans = exporter.get_finished_spans()
    process1 = named(spans, "process app:first")
    publish2 = named(spans, "publish app:second")
    assert publish2.parent is not None
    assert publish2.parent.span_id == process1.context.span_id


async def test_a_failing_handler_marks_its_process_span_as_an_error(tmp_path: Path) -> None:
    driver = "- name: broker\n  kind: queue.driver.memory\n"
    app, exporter = traced(chain_app(tmp_path, driver, "record"))
    async with app:
        await app.publish("app:first", {"fail": True, "id": 7})
        await wait_until(lambda: len(handlers.state.calls) >= 2, 10, "a redelivery")
    spans = [s for s in exporter.get_finished_spans() if s.name == "process app:first"]
    assert spans
    assert not spans[0].status.is_ok
    assert spans[0].events[0].name == "exception"


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


APP = """
import asyncio, sys, relevo
src = {'version': '1.0', 'namespace': 'n', 'entries': [
    {'name': 'mem', 'kind': 'queue.driver.memory'},
    {'name': 'q', 'kind': 'queue.queue', 'driver': 'mem'}]}
async def main():
    async with relevo.load(src) as app:
        await app.publish('n:q', 1)
        chain = app.queues['n:q']._publish_chain
        print(0 if chain is None else 1)
"""


def test_without_a_tracer_provider_tracing_is_not_installed_nor_opentelemetry_imported() -> None:
    out = run_python(APP + "asyncio.run(main())\nprint('opentelemetry' in sys.modules)\n")
    assert out.splitlines() == ["0", "False"]


def test_with_a_tracer_provider_set_every_app_traces_on_its_own() -> None:
    out = run_python(
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        + APP + "asyncio.run(main())\n"
        "print([s.name for s in exporter.get_finished_spans()])\n"
    )
    assert out.splitlines() == ["1", "['publish n:q']"]
