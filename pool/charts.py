"""Line charts drawn on the server as inline SVG: no script, no asset from a CDN.

line_chart() turns timed samples into coordinates; the template
admin/pool/usage_chart.html draws them.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

WIDTH, HEIGHT = 720, 200
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 36, 22, 8
MAX_POINTS = 720  # more samples than pixels are merged, keeping each bucket's peak


@dataclass
class Series:
    name: str
    label: str
    color: str
    points: str  # "x,y x,y ..." for <polyline>
    last: int


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    series: list[Series] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, label)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    empty: bool = True


Row = Mapping[str, Any]  # a time and a number per series


def _merge(rows: Sequence[Row], names: list[str]) -> Sequence[Row]:
    """At most MAX_POINTS rows: consecutive rows merged, each value its maximum."""
    if len(rows) <= MAX_POINTS:
        return rows
    size = -(-len(rows) // MAX_POINTS)
    merged: list[Row] = []
    for start in range(0, len(rows), size):
        bucket = rows[start : start + size]
        merged.append({"time": bucket[-1]["time"], **{n: max(r[n] for r in bucket) for n in names}})
    return merged


def _nice_top(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at or above ``value`` (at least 2)."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if step * top >= max(value, 2):
                return step * top
        top *= 10


def line_chart(rows: Sequence[Row], series: Sequence[tuple[str, str, str]], start: datetime, end: datetime) -> Chart:
    """``rows``: dicts with a ``time`` and a number per series name, oldest
    first; ``series``: (name, label, colour); the x axis runs from start to end."""
    names = [name for name, _, _ in series]
    rows = _merge(rows, names)
    chart = Chart(empty=not rows)
    plot_width, plot_height = WIDTH - MARGIN_LEFT, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    span = (end - start).total_seconds() or 1
    top = _nice_top(max((r[n] for r in rows for n in names), default=0))

    def x(time: datetime) -> float:
        return round(MARGIN_LEFT + plot_width * (time - start).total_seconds() / span, 1)

    def y(value: float) -> float:
        return round(MARGIN_TOP + plot_height * (1 - value / top), 1)

    for name, label, color in series:
        points = " ".join(f"{x(r['time'])},{y(r[name])}" for r in rows)
        chart.series.append(Series(name, label, color, points, rows[-1][name] if rows else 0))
    chart.y_ticks = [(y(value), value) for value in (0, top // 2, top)]
    chart.x_ticks = _time_ticks(start, end, x)
    return chart


def _time_ticks(start: datetime, end: datetime, x: Callable[[datetime], float]) -> list[tuple[float, str]]:
    span = end - start
    step = next((s for s in (timedelta(minutes=m) for m in (1, 2, 5, 10, 30, 60, 180, 360, 720, 1440)) if span / s <= 8), timedelta(days=2))
    label = "%H:%M" if span <= timedelta(days=2) else "%d %b"
    local = timezone.localtime(start)
    # The first whole step after the start, in local time.
    tick = local.replace(minute=0, second=0, microsecond=0)
    if step >= timedelta(days=1):
        tick = tick.replace(hour=0)
    while tick <= local:
        tick += step
    ticks = []
    while x(tick) < WIDTH - 15:  # a label nearer the edge would be cut off
        ticks.append((x(tick), tick.strftime(label)))
        tick += step
    return ticks
