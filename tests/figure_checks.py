"""Checks on drawn matplotlib figures (objects, not pixels): the tick labels an axis shows and
whether text boxes overlap."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg


def renderer(fig):
    """Draw ``fig`` (attaching an Agg canvas if ``plt.close`` detached it) and return its renderer."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def overlap(a, b, tol: float = 0.5) -> bool:
    """Two display boxes overlap by more than ``tol`` pixels in both directions."""
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def tick_labels(fig, axis) -> list:
    """The tick labels ``axis`` shows after drawing: visible, non-empty, at a tick inside the view
    (major and minor, either side), as (value, text, window box)."""
    r = renderer(fig)
    lo, hi = sorted(axis.get_view_interval())
    shown = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        loc = tick.get_loc()
        if not lo * (1 - 1e-9) <= loc <= hi * (1 + 1e-9):
            continue
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text().strip():
                shown.append((loc, label.get_text(), label.get_window_extent(r)))
    return shown


def no_overlaps(boxes) -> list:
    """Pairs of indices of overlapping boxes (empty when none overlap)."""
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if overlap(boxes[i], boxes[j])]
