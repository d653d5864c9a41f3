"""The printed report, the JSON record and the files of a serving-benchmark validation (TPOT, TTFT).

Statistics are the median and p90 of ``|log(predicted / measured)|`` over the feasible rows of a
group (``benchmarks.group_table``); rows that do not fit in memory are listed as infeasible, rows
moejax cannot express by id with their reason. Nothing in ``predicted`` is computed from a
measurement.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from . import intervals
from .benchmarks import GROUPS, PREDICTED, Case, group_table
from .report import _num, text_table

INTERVAL_COLUMNS = ("tpot_lo", "tpot_hi", "ttft_lo", "ttft_hi", "interval")
TABLE_COLUMNS = ("group", "value", "n", "infeasible", "TPOT median", "TPOT p90", "TTFT median", "TTFT p90")


def _ratio(x) -> str:
    """A |log ratio| statistic as the factor it means (0.182 -> ×1.20)."""
    return "—" if x is None else f"×{math.exp(x):.2f}"


def group_rows(table: list[dict]) -> list[list[str]]:
    return [
        [
            t["group"],
            t["value"],
            str(t["n"]),
            str(t["infeasible"]),
            _ratio(t["tpot_median"]),
            _ratio(t["tpot_p90"]),
            _ratio(t["ttft_median"]),
            _ratio(t["ttft_p90"]),
        ]
        for t in table
    ]


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def record(n: int, cases: list[Case], pred: dict, log_ratio: np.ndarray, table: list[dict], not_expressible: dict) -> dict:
    """The JSON summary: counts, per-group statistics, reasons, and every prediction by id."""
    ids = [c.row.id for c in cases]
    overall = table[0]
    return {
        "n": n,
        "evaluated": len(cases),
        "not_expressible": dict(not_expressible),
        "infeasible": [i for i, ok in zip(ids, pred["feasible"]) if not ok],
        "tpot_median_abs_log_ratio": overall["tpot_median"],
        "tpot_p90_abs_log_ratio": overall["tpot_p90"],
        "ttft_median_abs_log_ratio": overall["ttft_median"],
        "ttft_p90_abs_log_ratio": overall["ttft_p90"],
        "groups": table,
        "predicted": {i: {k: _finite(pred[k][j]) for k in PREDICTED} for j, i in enumerate(ids)},
    }


def report(title: str, table: list[dict], not_expressible: dict) -> str:
    """Per-group table, then the not-expressible rows by reason (every id named)."""
    lines = [
        title,
        "",
        "|log(predicted/measured)| as factors, feasible rows:",
        "",
        text_table(TABLE_COLUMNS, group_rows(table)),
    ]
    if not_expressible:
        by_reason: dict[str, list[str]] = {}
        for i, reason in not_expressible.items():
            by_reason.setdefault(reason, []).append(i)
        lines += ["", f"not expressible ({len(not_expressible)} rows):"]
        lines += [f"  {reason} ({len(ids)}): {', '.join(ids)}" for reason, ids in by_reason.items()]
    return "\n".join(lines)


def cv_table(cases: list[Case], cv: dict[str, np.ndarray], in_sample: np.ndarray) -> list[dict]:
    """Overall and per-group statistics of the in-sample fit and of each grouped cross-validation."""
    out = [{**row, "fold": "in-sample"} for row in group_table(cases, in_sample)[:1]]
    for g, r in cv.items():
        rows = group_table(cases, r)
        out += [{**row, "fold": f"leave one {g} out"} for row in rows if row["group"] in ("all", g)]
    return out


def cv_report(fit, cases: list[Case]) -> str:
    lines = ["", "fit (global constants): " + ", ".join(f"{k} = {v:.4g}" for k, v in fit.constants.items()), ""]
    body = [[t["fold"], *group_rows([t])[0]] for t in cv_table(cases, fit.cv, fit.in_sample)]
    return "\n".join(lines + [text_table(("fold", *TABLE_COLUMNS), body)])


def interval_report(cases: list[Case], table: dict | None) -> str:
    """The 80 % intervals per (backend, system) of the cases: rows, status, and the factors on the
    central TPOT and TTFT (every row's interval, in s, is in ``serving.csv`` and the JSON line)."""
    if table is None:
        return "\n80 % prediction intervals: none (this accounting has no intervals: table)"
    keys: dict[tuple, int] = {}
    for c in cases:
        keys[(c.row.backend, c.row.hardware)] = keys.get((c.row.backend, c.row.hardware), 0) + 1
    body = []
    for (b, h), n in sorted(keys.items()):
        bd, status, reason = intervals.lookup(table, b, h)
        body.append([b, h, str(n), status, *(f"×{bd[k][0]:.2f} – ×{bd[k][1]:.2f}" for k in intervals.FIGURES), reason])
    return "\n".join(
        [
            "",
            "80 % prediction intervals, [central·lo, central·hi] (per row in serving.csv and the JSON line):",
            "",
            text_table(("backend", "system", "rows", "interval", "TPOT lo – hi", "TTFT lo – hi", "reason"), body),
        ]
    )


def interval_fit(cases: list[Case], cv: dict[str, np.ndarray], measurements: str) -> tuple[dict, list[dict]]:
    """(the interval table for the preset, with its provenance and pooled nested coverage; the
    nested coverage rows) from the grouped cross-validation residuals (``intervals``)."""
    backends, hardware = [c.row.backend for c in cases], [c.row.hardware for c in cases]
    labels = {g: np.array([c.row.groups[g] for c in cases]) for g in ("backend", "system", "model")}
    table = intervals.calibrate(backends, hardware, labels["model"], cv)
    cov = intervals.coverage(backends, hardware, labels, cv)
    source = (
        f"python -m moejax.validate measurements={measurements} fit=true ({dt.date.today().isoformat()}): "
        "10th/90th percentiles of the grouped cross-validation log residuals, rule in moejax.analysis.validation.intervals"
    )
    pooled = {f"leave one {g} out": v for g, v in intervals.pooled(cov).items()}
    return {"source": source, "coverage": pooled, **intervals.rounded(table)}, cov


def fold_label(row: dict) -> str:
    """``leave one model out`` (a held-out group), ``leave one model out, per backend`` (the held-out
    models' rows counted per backend)."""
    return f"leave one {row['grouping']} out" + (f", per {row['per']}" if row.get("per") else "")


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def coverage_report(cov: list[dict]) -> str:
    """Nested out-of-sample coverage of the 80 % interval per held-out group (target 70–90 %)."""
    body = [[fold_label(r), r["value"], str(r["n_tpot"]), _pct(r["tpot"]), str(r["n_ttft"]), _pct(r["ttft"])] for r in cov]
    return "\n".join(
        [
            "",
            "coverage of the 80 % interval, nested out of sample (interval from the other groups only):",
            "",
            text_table(("fold", "held out", "n TPOT", "TPOT", "n TTFT", "TTFT"), body),
        ]
    )


def write_outputs(out_dir: Path, cases: list[Case], pred: dict, log_ratio: np.ndarray, rec: dict) -> list[Path]:
    """``serving.csv`` (one row per evaluated benchmark, SI units) and ``summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "serving.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                *GROUPS,
                "isl",
                "osl",
                "concurrency",
                "measured_tpot",
                "measured_ttft",
                *(f"predicted_{k}" for k in PREDICTED),
                *(f"predicted_{k}" for k in INTERVAL_COLUMNS),
                "queue_wait",
                "admission_wait",
                "t_prefill",
                "feasible",
                "log_ratio_tpot",
                "log_ratio_ttft",
            ]
        )
        for j, c in enumerate(cases):
            w.writerow(
                [
                    c.row.id,
                    *(c.row.groups[g] for g in GROUPS),
                    c.row.isl,
                    c.row.osl,
                    c.row.concurrency,
                    c.row.tpot,
                    c.row.ttft,
                    *(pred[k][j] for k in PREDICTED),
                    *(pred[k][j] if k in pred else "" for k in INTERVAL_COLUMNS),
                    pred["queue_wait"][j],
                    pred["admission_wait"][j],
                    pred["t_prefill"][j],
                    bool(pred["feasible"][j]),
                    log_ratio[j, 0],
                    log_ratio[j, 1],
                ]
            )
    path = out_dir / "summary.json"
    path.write_text(json.dumps(rec, indent=1, default=_num) + "\n")
    return [table, path]
