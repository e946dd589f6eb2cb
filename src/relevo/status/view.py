"""How a sample looks: a rich table for the terminal, one line for a log."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from relevo.status.sampler import Sample

_STATUS_STYLE = {"running": "green", "failed": "bold red", "starting": "yellow",
                 "stopping": "yellow"}


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value else "0"


def table(sample: Sample, title: str) -> RenderableType:
    consumers = Table(title=title, title_justify="left", expand=False, show_edge=False)
    consumers.add_column("consumer")
    consumers.add_column("queue")
    consumers.add_column("status")
    consumers.add_column("processed/s", justify="right")
    consumers.add_column("failures/s", justify="right")
    consumers.add_column("in flight", justify="right")
    consumers.add_column("processed", justify="right")
    for row in sample.consumers:
        consumers.add_row(
            row.consumer, row.queue, Text(row.status, style=_STATUS_STYLE.get(row.status, "dim")),
            _rate(row.per_s),
            Text(_rate(row.failed_per_s), style="red" if row.failed_per_s else ""),
            str(row.in_flight), f"{row.handled:,}",
        )
    if not sample.consumers:
        consumers.add_row(Text("no consumer", style="dim"), "", "", "", "", "", "")
    queues = Table(show_edge=False, expand=False)
    queues.add_column("queue")
    queues.add_column("ready", justify="right")
    queues.add_column("in flight", justify="right")
    queues.add_column("delayed", justify="right")
    for q in sample.queues:
        queues.add_row(q.queue, _count(q.ready), _count(q.in_flight), _count(q.delayed))
    return Group(consumers, Text(""), queues, Text("Ctrl-C stops gracefully", style="dim"))


def line(sample: Sample) -> str:
    """One summary line: totals, then each consumer and each queue that has something."""
    parts = [
        f"{sample.per_s:,.1f} processed/s, {sample.failed_per_s:,.1f} failures/s, "
        f"{sample.in_flight} in flight"
    ]
    for row in sample.consumers:
        parts.append(
            f"{row.consumer} [{row.status}] {row.per_s:,.1f}/s, "
            f"{row.failed_per_s:,.1f} failed/s, {row.in_flight} in flight"
        )
    for q in sample.queues:
        if q.ready is None:
            continue
        parts.append(f"{q.queue} ready {q.ready:,}, in flight {q.in_flight:,}, "
                     f"delayed {q.delayed:,}")
    return "; ".join(parts)
