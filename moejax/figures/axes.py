"""Axis ticks and text placement shared by the figures: log axes labelled in plain numbers at a
density that suits their span, and annotations placed where they overlap nothing already drawn."""

from __future__ import annotations

import math

import matplotlib.ticker as mticker
import numpy as np

SUBS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), tuple(range(1, 10)))  # sparsest first
MIN_LABELS = 4


def log_ticks(axis, lo: float, hi: float) -> None:
    """Label the log-scaled ``axis`` (``ax.xaxis``, ``ax.yaxis`` or a secondary axis) over data
    limits ``lo``..``hi`` with plain numbers (``%g``) at the sparsest of decades, 1-2-5, 1-2-3-5 or
    1-9 × 10^n that gives ``MIN_LABELS`` labels within the limits (matplotlib's default labels
    decades only: none, or two, on a span of about one decade); minor ticks unlabelled."""
    lo, hi = sorted((float(lo), float(hi)))

    def count(subs):
        if not (lo > 0 and math.isfinite(hi)):
            return MIN_LABELS
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        return sum(lo <= s * 10.0**d <= hi for d in decades for s in subs)

    subs = next((s for s in SUBS if count(s) >= MIN_LABELS), SUBS[-1])
    axis.set_major_locator(mticker.LogLocator(base=10, subs=subs, numticks=50))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(mticker.LogLocator(base=10, subs=tuple(np.arange(1, 10)), numticks=50))
    axis.set_minor_formatter(mticker.NullFormatter())


OFFSETS = [(4, 3), (4, -11), (-4, 3), (-4, -11), (4, 12), (-4, 12), (4, -20), (-4, -20), (10, -4), (-10, -4)]  # points


def place_labels(ax, labels, fontsize: float = 7) -> list:
    """Annotate ``labels`` (``[(text, (x, y), colour)]``, data coordinates) one by one, each at the
    first offset of ``OFFSETS`` where its box overlaps neither an earlier label, the axes' other
    texts, nor leaves the axes; a label that fits nowhere is not drawn (returns the drawn ones)."""
    fig = ax.figure
    fig.canvas.draw()  # layout settled: boxes measured where they will be drawn
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = [t.get_window_extent(renderer) for t in ax.texts if t.get_text() and t.get_visible()]
    drawn = []
    for text, xy, colour in labels:
        for dx, dy in OFFSETS:
            a = ax.annotate(
                text,
                xy,
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                color=colour,
                ha="left" if dx >= 0 else "right",
                annotation_clip=False,
            )
            box = a.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(t) for t in taken):
                taken.append(box)
                drawn.append(a)
                break
            a.remove()
    return drawn
