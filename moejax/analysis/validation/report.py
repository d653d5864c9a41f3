"""The residual table and the one-line JSON summary of a validation run.

Residual of a point: ``log(predicted / measured)`` on its measured figure (README of the format).
Summary statistics are over the evaluated points that are feasible: the median and the 90th
percentile (linear interpolation, ``numpy.percentile``) of ``|log ratio|``. Points that do not fit
in memory are prediction failures: listed under ``infeasible`` with their predicted value null,
never dropped.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ...physics.cost import BOUND_MEANINGS
from .evaluate import Evaluation
from .measurements import FIGURE_UNITS, FIGURES

COLUMNS = ("id", "figure", "measured", "predicted", "ratio", "TPOT (s)", "TTFT (s)", "bound", "dominant term", "notes")


def abs_log_stats(log_ratio) -> tuple[float | None, float | None]:
    """(median, p90) of ``|log ratio|`` over the finite entries (None when there are none)."""
    x = np.abs(np.asarray(log_ratio, dtype=float))
    x = x[np.isfinite(x)]
    if not len(x):
        return None, None
    return float(np.median(x)), float(np.percentile(x, 90))


def _num(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.4g}"


def infeasible_reason(ev: Evaluation, i: int) -> str:
    p = ev.points[i]
    b = p.measurement.batch
    return (
        f"does not fit in memory at batch {b} (B_max = {_num(ev.b_max[i])})"
        if b != "max"
        else "does not fit in memory (B_max < 1)"
    )


def point_notes(ev: Evaluation, i: int) -> str:
    """Everything chosen or approximated for point ``i``: infeasibility, the batch evaluated for
    ``batch: max``, the searched variant, and the deployment notes."""
    p = ev.points[i]
    tbo = "two-batch overlap (read from its notes): overlap = 1" if p.measurement.two_batch_overlap else ""
    notes = [n for n in (ev.variant[i], *p.notes, tbo) if n]
    if not ev.feasible[i]:
        notes.insert(0, "INFEASIBLE: " + infeasible_reason(ev, i))
    elif p.measurement.batch == "max":
        read = f" (at most the run's {p.measurement.requests} requests, read from its notes)" if p.measurement.requests else ""
        notes.insert(0, f"batch max = {ev.batch[i]:.0f}{read}")
    return "; ".join(notes)


def rows(ev: Evaluation, ttft: dict | None = None) -> list[list[str]]:
    """Table rows, one per evaluated point (strings)."""
    out = []
    for i, p in enumerate(ev.points):
        m = p.measurement
        f = predicted_figures(ev, i, (ttft or {}).get(m.id))
        out.append(
            [
                m.id,
                f"{m.figure} ({FIGURE_UNITS[m.figure]})",
                _num(m.value),
                _num(ev.predicted[i]),
                _num(ev.predicted[i] / m.value),
                _num(f["tpot"]),
                _num(f["ttft"]),
                BOUND_MEANINGS[int(ev.bound[i])],
                ev.dominant[i],
                point_notes(ev, i),
            ]
        )
    return out


def text_table(header, body) -> str:
    """Fixed-width columns (the last one unpadded)."""
    widths = [max(len(str(r[j])) for r in [header, *body]) for j in range(len(header) - 1)]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1])
    return "\n".join([fmt(header), fmt(["-" * w for w in widths] + ["-----"]), *(fmt(r) for r in body)])


def predicted_figures(ev: Evaluation, i: int, ttft: float | None) -> dict:
    """Every figure of point ``i`` its measurement can be compared with (SI units; null where
    infeasible or not defined): the three ``FIGURES``, ``tpot`` (decode: s per output token after the
    first) and ``ttft`` (prefill: the pass; a serving benchmark: ``ttft`` as predicted)."""
    if not ev.feasible[i]:
        return dict.fromkeys((*FIGURES, "tpot", "ttft"))
    f = {k: float(v) for k, v in zip(FIGURES, ev.figures[i])}
    meas = ev.points[i].measurement
    decode = meas.phase == "decode"
    return {**f, "tpot": f["step_time"] / meas.tokens_per_step if decode else None, "ttft": ttft if decode else f["step_time"]}


def summary(n: int, ev: Evaluation, not_expressible: dict, skipped: list, ttft: dict | None = None) -> dict:
    """The JSON summary: counts, reasons, statistics and every point's predicted figures
    (``predicted_figures``; ``ttft`` {id: s} for the serving benchmarks)."""
    median, p90 = abs_log_stats(ev.log_ratio)
    ids = [p.measurement.id for p in ev.points]
    ttft = ttft or {}
    return {
        "n": n,
        "evaluated": len(ev.points),
        "skipped": list(skipped),
        "not_expressible": dict(not_expressible),
        "infeasible": {ids[i]: infeasible_reason(ev, i) for i in range(len(ids)) if not ev.feasible[i]},
        "median_abs_log_ratio": median,
        "p90_abs_log_ratio": p90,
        "predicted": {k: predicted_figures(ev, i, ttft.get(k)) for i, k in enumerate(ids)},
    }


def report(title: str, ev: Evaluation, not_expressible: dict, skipped: list, ttft: dict | None = None) -> str:
    """The printed report: residual table, then the not-expressible and skipped points."""
    lines = [title, "", text_table(COLUMNS, rows(ev, ttft))]
    if not_expressible:
        lines += ["", "not expressible:", *(f"  {k}: {v}" for k, v in not_expressible.items())]
    if skipped:
        lines += ["", f"skipped (usable: false): {', '.join(skipped)}"]
    return "\n".join(lines)


def write_outputs(out_dir: Path, ev: Evaluation, record: dict) -> list[Path]:
    """``validation.csv`` (one row per evaluated point, SI units) and ``summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "validation.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "firmness",
                "phase",
                "figure",
                "measured",
                "predicted",
                "log_ratio",
                "feasible",
                "bound",
                "dominant",
                "batch",
                "b_max",
                "t_compute",
                "t_hbm",
                "t_comm",
                "t_comm_exposed",
                "notes",
            ]
        )
        for i, p in enumerate(ev.points):
            m = p.measurement
            w.writerow(
                [
                    m.id,
                    m.firmness,
                    m.phase,
                    m.figure,
                    m.value,
                    ev.predicted[i],
                    ev.log_ratio[i],
                    bool(ev.feasible[i]),
                    BOUND_MEANINGS[int(ev.bound[i])],
                    ev.dominant[i],
                    ev.batch[i],
                    ev.b_max[i],
                    *(ev.times[k][i] for k in ("t_compute", "t_hbm", "t_comm", "t_comm_exposed")),
                    point_notes(ev, i),
                ]
            )
    path = out_dir / "summary.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return [table, path]
