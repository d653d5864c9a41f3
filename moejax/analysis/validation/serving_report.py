"""The printed report, the JSON record and the files of a serving-benchmark validation (TPOT, TTFT).

Statistics are the median and p90 of ``|log(predicted / measured)|`` over the feasible rows of a
group (``benchmarks.group_table``); rows that do not fit in memory are listed as infeasible, rows
moejax cannot express by id with their reason. Nothing in ``predicted`` is computed from a
measurement.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .benchmarks import GROUPS, PREDICTED, Case, group_table
from .report import _num, text_table

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


def record(
    n: int, cases: list[Case], pred: dict, log_ratio: np.ndarray, table: list[dict], not_expressible: dict
) -> dict:
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
