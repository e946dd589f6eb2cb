"""The dashboard's pure parts: history, rates, charts, the listen address; and its imports."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from relevo.dashboard.chart import SPARK_PAD, _nice, chart, sparkline
from relevo.dashboard.history import KEEP_S, CountDeltaRates, History
from relevo.dashboard.serve import parse_listen
from relevo.drivers.base import QueueStats


async def never(queue_id: str) -> QueueStats:
    raise AssertionError("not read in these tests")


def test_history_keeps_one_hour_of_samples_and_no_more() -> None:
    history = History(["q"], never, sample_s=5)
    for n in range(2000):
        history.record("q", QueueStats(n, 0, 0), at=1000.0 + n * 5)
    series = history.series("q")
    assert series[-1].ready == 1999
    assert series[-1].at - series[0].at <= KEEP_S
    assert len(series) <= KEEP_S / 5 + 2


def test_rates_come_from_the_change_of_counts_over_the_last_minute() -> None:
    history = History(["q"], never, sample_s=5)
    rates = CountDeltaRates(history)
    assert rates.rates("q") is None  # one sample cannot make a rate
    for n in range(30):  # 2 more messages every 5 s
        history.record("q", QueueStats(2 * n, 0, 0), at=1000.0 + n * 5)
    measured = rates.rates("q")
    assert measured is not None
    assert measured.net_per_s == pytest.approx(0.4)
    assert measured.published_per_s is None


def test_a_young_history_is_drawn_over_what_it_has_not_a_whole_hour() -> None:
    history = History(["q"], never, sample_s=5)
    for n in range(10):
        history.record("q", QueueStats(n, 1, 0), at=1000.0 + n * 30)
    drawn = chart(history.series("q"), width=600, now=1270.0)
    assert drawn.points == 10
    assert drawn.top == 10
    assert drawn.left_label == "-4 min"
    first_x = float(drawn.lines["ready"].split()[0].split(",")[0])
    assert first_x == pytest.approx(0.0)


def test_a_sparkline_keeps_off_the_edges_of_its_cell() -> None:
    """Empty sits on the baseline, the busiest sample at the top, both inside the cell's
    padding (a line drawn on the edge read as a stray underscore)."""
    history = History(["q"], never, sample_s=5)
    now = time.time()
    for n, count in enumerate([0, 4, 8, 0]):
        history.record("q", QueueStats(count, 0, 0), at=now - 30 + n * 5)
    ys = [float(point.split(",")[1]) for point in sparkline(history.series("q")).split()]
    assert ys == [24 - SPARK_PAD, 12.0, SPARK_PAD, 24 - SPARK_PAD]


def test_the_y_axis_top_is_a_round_number() -> None:
    assert [_nice(v) for v in (0, 1, 3, 7, 11, 480, 100_000)] == [1, 1, 5, 10, 20, 500, 100_000]


def test_listen_takes_host_and_port() -> None:
    assert parse_listen("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    for bad in ("8000", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_the_command_line_does_not_import_the_dashboard_until_asked() -> None:
    code = (
        "import sys, relevo, relevo.cli, relevo.app; "
        "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn', 'relevo.dashboard') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
