"""The overview's charts as geometry: where each bar of a server-rendered SVG goes and what it
stands for. templates/charts.html draws them, so every label is escaped by the template and
formatted by the same filters as the rest of the page; no script, no library, nothing fetched.

Coordinates are in SVG user units; the SVG scales to its box (viewBox), so the numbers here only
fix proportions and how large the text is against the bars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Callable

from costr.accounts.usage_rollups import Usage

DAILY_WIDTH, DAILY_HEIGHT = 400, 190
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 10, 24   # the plot's margins: tick labels left, days below
GAP = 0.2                                   # the share of a day's slot left blank beside its bar
Y_INTERVALS = 4
SHARE_WIDTH, SHARE_ROW = 360, 34            # a share chart's row: label line, then its bar
SHARE_BAR = 10
MOST_SHARES = 8                             # past these, the smaller ones are one "other" row
LONGEST_LABEL = 36                          # characters of a share's label shown on its row


@dataclass(frozen=True)
class Segment:
    """One rectangle of a day's bar; `series` is its CSS class and legend entry."""
    series: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Column:
    """One day: its bar (segments stacked from the axis up) and an invisible hover target as
    tall as the plot, so that a day with a tiny bar still shows its figures."""
    day: str
    usage: Usage
    segments: tuple[Segment, ...]
    x: float
    width: float


@dataclass(frozen=True)
class Tick:
    position: float
    value: int
    text: str = ""      # an x tick's label; a y tick's value is formatted by the template


@dataclass(frozen=True)
class DailyChart:
    """Bars per day. `unit` says how the template formats values: "requests" or "usd"."""
    slug: str
    title: str
    unit: str
    columns: tuple[Column, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    series: tuple[tuple[str, str], ...]     # (css class, legend text), bottom first
    width: int = DAILY_WIDTH
    height: int = DAILY_HEIGHT
    plot_left: int = LEFT
    plot_right: int = DAILY_WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = DAILY_HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return all(not c.segments for c in self.columns)


def nice_step(rough: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten (at least 1) not below `rough`, so axis
    ticks fall on round values."""
    if rough <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(rough))
    return next(factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= rough)


def daily_chart(slug: str, title: str, unit: str, days: list[tuple[str, Usage]],
                series: list[tuple[str, str, Callable[[Usage], int]]]) -> DailyChart:
    """A bar per day, each bar the stacked values of `series` (css class, legend text, value of
    a day's Usage), from the axis up; negative values are drawn as nothing."""
    top_value = max((sum(max(0, value(u)) for _, _, value in series) for _, u in days), default=0)
    step = nice_step(top_value / Y_INTERVALS)
    axis_top = step * max(1, math.ceil(top_value / step))
    plot_bottom, plot_height = DAILY_HEIGHT - BOTTOM, DAILY_HEIGHT - BOTTOM - TOP
    slot = (DAILY_WIDTH - RIGHT - LEFT) / max(1, len(days))

    def y_of(value: float) -> float:
        return plot_bottom - plot_height * value / axis_top

    columns = []
    for index, (day, usage) in enumerate(days):
        x, base, segments = LEFT + index * slot, 0, []
        for css, _, value in series:
            amount = max(0, value(usage))
            if amount:
                top, bottom = y_of(base + amount), y_of(base)
                segments.append(Segment(css, round(x + slot * GAP / 2, 2), round(top, 2),
                                        round(slot * (1 - GAP), 2), round(bottom - top, 2)))
            base += amount
        columns.append(Column(day, usage, tuple(segments), round(x, 2), round(slot, 2)))
    y_ticks = tuple(Tick(round(y_of(v), 2), v) for v in range(0, axis_top + 1, step)
                    if top_value or not v)   # an empty chart has its axis at 0 alone
    return DailyChart(slug=slug, title=title, unit=unit, columns=tuple(columns), y_ticks=y_ticks,
                      x_ticks=_day_ticks(days, slot), series=tuple((c, t) for c, t, _ in series))


def _day_ticks(days: list[tuple[str, Usage]], slot: float) -> tuple[Tick, ...]:
    """A label every seventh day, counted back from the last (today), e.g. "28 Apr"."""
    last = len(days) - 1
    return tuple(Tick(round(LEFT + (i + 0.5) * slot, 2), 0,
                      date.fromisoformat(days[i][0]).strftime("%d %b"))
                 for i in range(last, -1, -7))


@dataclass(frozen=True)
class ShareRow:
    label: str
    count: int
    percent: float
    y: float             # the label's baseline; the bar sits under it
    bar_width: float

    @property
    def short_label(self) -> str:
        """The label as its row shows it, cut to fit beside the figures (the row's title has
        it whole)."""
        if len(self.label) <= LONGEST_LABEL:
            return self.label
        return self.label[: LONGEST_LABEL - 1] + "…"


@dataclass(frozen=True)
class ShareChart:
    """Horizontal bars, one per label, each the label's share of `total`."""
    slug: str
    title: str
    total: int
    rows: tuple[ShareRow, ...]
    width: int = SHARE_WIDTH
    bar_offset: int = 6   # from a label's baseline to the top of its bar
    bar_height: int = SHARE_BAR

    @property
    def height(self) -> int:
        return max(1, len(self.rows)) * SHARE_ROW


def share_chart(slug: str, title: str, counts: list[tuple[str, int]]) -> ShareChart:
    """Each (label, count)'s share of their sum, largest first; past MOST_SHARES rows the rest
    are added up as "other"."""
    counts = sorted(((label, n) for label, n in counts if n > 0), key=lambda c: (-c[1], c[0]))
    if len(counts) > MOST_SHARES:
        rest = sum(n for _, n in counts[MOST_SHARES - 1:])
        counts = counts[: MOST_SHARES - 1] + [("other", rest)]
    total = sum(n for _, n in counts)
    rows = tuple(ShareRow(label, n, 100.0 * n / total, index * SHARE_ROW + 14,
                          round(SHARE_WIDTH * n / total, 2))
                 for index, (label, n) in enumerate(counts))
    return ShareChart(slug=slug, title=title, total=total, rows=rows)
