"""Counts over the last hour as SVG polylines, drawn on the server (no chart script)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from relevo.dashboard.history import KEEP_S, Sample

SERIES = ("ready", "in_flight", "delayed")


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    top: int  # the count the top of the chart stands for
    lines: dict[str, str]  # series name -> "x,y x,y ..." for <polyline points>
    points: int  # samples drawn

    @property
    def empty(self) -> bool:
        return self.points == 0


def chart(samples: list[Sample], width: int = 720, height: int = 160,
          now: float | None = None) -> Chart:
    end = time.time() if now is None else now
    start = end - KEEP_S
    shown = [s for s in samples if s.at >= start]
    top = _nice(max((max(s.ready, s.in_flight, s.delayed) for s in shown), default=0))
    lines = {}
    for name in SERIES:
        coords = []
        for sample in shown:
            x = (sample.at - start) / KEEP_S * width
            y = height - getattr(sample, name) / top * height
            coords.append(f"{x:.1f},{y:.1f}")
        lines[name] = " ".join(coords)
    return Chart(width, height, top, lines, len(shown))


def sparkline(samples: list[Sample], width: int = 120, height: int = 24) -> str:
    """Points of one small line: ready + in flight over the last hour."""
    end = time.time()
    shown = [s for s in samples if s.at >= end - KEEP_S]
    top = max((s.messages for s in shown), default=0) or 1
    return " ".join(
        f"{(s.at - end + KEEP_S) / KEEP_S * width:.1f},{height - s.messages / top * height:.1f}"
        for s in shown
    )


def _nice(value: int) -> int:
    """A round top for the y axis: 1, 2, 5 times a power of ten."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if value <= top * step:
                return top * step
        top *= 10
