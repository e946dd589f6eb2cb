"""Counts over the last hour as SVG polylines, drawn on the server (no chart script)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from relevo.dashboard.history import KEEP_S, Sample

SERIES = ("ready", "in_flight", "delayed")
MIN_SPAN_S = 120.0


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    top: int  # the count the top of the chart stands for
    lines: dict[str, str]  # series name -> "x,y x,y ..." for <polyline points>
    points: int  # samples drawn
    span_s: float  # seconds the x axis covers, ending now

    @property
    def left_label(self) -> str:
        return _ago(self.span_s)

    @property
    def middle_label(self) -> str:
        return _ago(self.span_s / 2)

    @property
    def empty(self) -> bool:
        return self.points == 0


def chart(samples: list[Sample], width: int = 720, height: int = 160,
          now: float | None = None) -> Chart:
    end = time.time() if now is None else now
    shown = [s for s in samples if s.at >= end - KEEP_S]
    span = _span(shown, end)
    start = end - span
    top = _nice(max((max(s.ready, s.in_flight, s.delayed) for s in shown), default=0))
    lines = {}
    for name in SERIES:
        coords = []
        for sample in shown:
            x = (sample.at - start) / span * width
            y = height - getattr(sample, name) / top * height
            coords.append(f"{x:.1f},{y:.1f}")
        lines[name] = " ".join(coords)
    return Chart(width, height, top, lines, len(shown), span)


SPARK_PAD = 3
"""Pixels kept free above and below a sparkline, so a line at 0 or at the top is not
drawn on the cell's edge (where it read as a stray underscore)."""


def sparkline(samples: list[Sample], width: int = 120, height: int = 24) -> str:
    """Points of one small line: ready + in flight over the last hour."""
    end = time.time()
    shown = [s for s in samples if s.at >= end - KEEP_S]
    span = _span(shown, end)
    top = max((s.messages for s in shown), default=0) or 1
    drawn = height - 2 * SPARK_PAD
    return " ".join(
        f"{(s.at - end + span) / span * width:.1f},"
        f"{SPARK_PAD + drawn - s.messages / top * drawn:.1f}"
        for s in shown
    )


def _span(shown: list[Sample], end: float) -> float:
    """The x axis: the hour once there is an hour of samples; until then, what there is
    (at least two minutes), so a young dashboard draws a line, not a stripe at the edge."""
    if not shown:
        return KEEP_S
    return min(KEEP_S, max(MIN_SPAN_S, end - shown[0].at))


def _ago(seconds: float) -> str:
    return f"-{seconds / 60:.0f} min" if seconds >= 120 else f"-{seconds:.0f} s"


def _nice(value: int) -> int:
    """A round top for the y axis: 1, 2, 5 times a power of ten."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if value <= top * step:
                return top * step
        top *= 10
