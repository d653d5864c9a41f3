"""80 % prediction intervals for serving predictions (TPOT, TTFT), derived from the grouped
cross-validation residuals of the serving fit, and their out-of-sample coverage.

A residual is ``r = log(predicted / measured)``, out of sample. The interval of a prediction ``p``
is ``[p·lo, p·hi]`` with the factors ``lo = exp(-max(q_hi, 0))`` and ``hi = exp(-min(q_lo, 0))``,
``q_lo``/``q_hi`` the 10th/90th percentiles of the residuals (``LEVEL``): the measured value is
``p·exp(-r)``, so 80 % of the calibration rows lie inside. Clamping at zero keeps ``lo ≤ 1 ≤ hi``
(the central value inside) when the residuals are biased to one side; it only widens.

The table (``calibrate``, stored under ``intervals:`` in the accounting preset by the fit):

- ``cells[backend][family]``, ``backends[backend]``, ``families[family]``, ``all``: from the
  leave-one-model-out residuals (the error on a deployment moejax was not fitted on, on a system and
  engine it was): the interval of a case whose system and backend are in the calibration data.
  A cell with fewer than ``MIN_ROWS`` residuals is not used (its backend's interval is).
- ``new_system[family | "all"]``: leave-one-system-out residuals; ``new_backend[family | "all"]``:
  leave-one-backend-out residuals: the spread of a case on a system (an engine) the fit never saw.

The rule (``lookup``), per case (backend, hardware):

1. backend and system in the data: ``cells[b][f]`` (else ``backends[b]``): ``calibrated``.
2. system not in the data, family in it: the hull (smallest interval containing both) of rule 1's
   interval and ``new_system[f]``: ``extrapolated``.
3. family not in the data: the hull of ``backends[b]`` and ``new_system["all"]``: ``extrapolated``.
   The spread of NVIDIA systems held out is all there is; for another vendor's stack it is a
   lower bound on the error, and the reason says so.
4. backend not in the data: the hull of rules 1–3's interval (over all backends: ``families[f]``,
   else ``all``) and ``new_backend[f]`` (else ``["all"]``): ``extrapolated``.

``backend=None`` (an engine not named, e.g. ``moejax.point``) uses the all-backend intervals.
An extrapolated interval is never narrower than the calibrated one it starts from (the hull).

Coverage (``coverage``) is nested, so no residual sets the interval it is checked against: for each
held-out value of a grouping (backend, system, model), the table is rebuilt from the other values'
rows only, the rule gives the held-out rows their interval as for unseen cases, and the held-out
rows' residuals of that grouping's cross-validation are counted inside.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.8
QUANTILES = ((1 - LEVEL) / 2, (1 + LEVEL) / 2)
MIN_ROWS = 20
FIGURES = ("tpot", "ttft")
# Hardware family: an architecture generation (its kernels, libraries and engine support move together);
# a catalogue accelerator not named here is its own family.
FAMILIES = {
    "a100-sxm": "ampere",
    "h100-sxm": "hopper",
    "h200": "hopper",
    "h20": "hopper",
    "h800": "hopper",
    "b200": "blackwell",
    "b300": "blackwell",
    "gb200-nvl72": "blackwell",
    "gb300-nvl72": "blackwell",
    "mi300x": "cdna3",
    "mi325x": "cdna3",
    "mi355x": "cdna4",
}


def family(hardware: str) -> str:
    """The hardware family of a catalogue accelerator (``FAMILIES``; else the name itself)."""
    return FAMILIES.get(hardware, hardware)


def band(r: np.ndarray) -> dict | None:
    """``{"n", "tpot": [lo, hi], "ttft": [lo, hi]}``: the factors on the central prediction from the
    log residuals ``r`` [n, 2] (module docstring), each figure over its finite residuals; None when a
    figure has fewer than 2 finite residuals."""
    r = np.asarray(r, float).reshape(-1, 2)
    out = {"n": int(np.isfinite(r).all(axis=1).sum())}
    for j, k in enumerate(FIGURES):
        x = r[np.isfinite(r[:, j]), j]
        if len(x) < 2:
            return None
        q_lo, q_hi = np.quantile(x, QUANTILES)
        out[k] = [float(np.exp(-max(q_hi, 0.0))), float(np.exp(-min(q_lo, 0.0)))]
    return out


def hull(*bands: dict | None) -> dict | None:
    """The smallest interval containing every given band (None ignored; None when none is given)."""
    given = [b for b in bands if b is not None]
    if not given:
        return None
    out = {"n": max(b["n"] for b in given)}
    for k in FIGURES:
        out[k] = [min(b[k][0] for b in given), max(b[k][1] for b in given)]
    return out


def _by(labels: np.ndarray, r: np.ndarray, min_rows: int) -> dict:
    out = {}
    for v in sorted(set(labels)):
        b = band(r[labels == v])
        if b is not None and b["n"] >= min_rows:
            out[str(v)] = b
    return out


def calibrate(backend, hardware, cv: dict[str, np.ndarray], min_rows: int = MIN_ROWS) -> dict:
    """The interval table from per-row labels (``backend``, ``hardware`` catalogue names) and the
    cross-validation residuals ``cv[grouping]`` [n, 2] (``model``, ``system``, ``backend``)."""
    backend, hardware = np.asarray(backend, str), np.asarray(hardware, str)
    fam = np.array([family(h) for h in hardware])
    lomo, loso, lobo = (np.asarray(cv[g], float) for g in ("model", "system", "backend"))
    cells = {str(b): _by(fam[backend == b], lomo[backend == b], min_rows) for b in sorted(set(backend))}
    return {
        "level": LEVEL,
        "min_rows": min_rows,
        "systems": sorted({str(h) for h in hardware}),
        "cells": cells,
        "backends": _by(backend, lomo, 1),
        "families": _by(fam, lomo, 1),
        "all": band(lomo),
        "new_system": {**_by(fam, loso, 1), "all": band(loso)},
        "new_backend": {**_by(fam, lobo, 1), "all": band(lobo)},
    }


def lookup(table: dict, backend: str | None, hardware: str) -> tuple[dict | None, str, str]:
    """(band, ``"calibrated"`` or ``"extrapolated"``, reason) of a case (module docstring's rule);
    (None, ``"none"``, reason) when the table has too few residuals for it."""
    bd, status, reason = _rule(table, backend, hardware)
    if bd is None:
        return None, "none", "too few calibration residuals for an interval"
    return bd, status, reason


def _rule(table: dict, backend: str | None, hardware: str) -> tuple[dict | None, str, str]:
    f = family(hardware)
    seen_family = f in table["families"]
    seen_system = hardware in table["systems"]
    if backend is None or backend in table["backends"]:
        if backend is None:
            base = table["families"].get(f) or table["all"]
        else:
            base = table["cells"].get(backend, {}).get(f) or table["backends"].get(backend)
        if seen_system:
            return base, "calibrated", ""
        if seen_family:
            return (
                hull(base, table["new_system"].get(f)),
                "extrapolated",
                (f"system {hardware} not in the calibration data (family {f} is): widened to the leave-one-system-out spread"),
            )
        base = table["backends"].get(backend) if backend is not None else table["all"]
        return (
            hull(base, table["new_system"].get("all")),
            "extrapolated",
            (
                f"hardware family {f} not in the calibration data: widened to the leave-one-system-out spread of "
                f"{', '.join(sorted(table['families']))} systems, a lower bound for another family"
            ),
        )
    inner, _, why = _rule(table, None, hardware)
    spread = table["new_backend"].get(f) or table["new_backend"].get("all")
    reason = f"backend {backend} not in the calibration data: widened to the leave-one-backend-out spread"
    return hull(inner, spread), "extrapolated", reason + (f"; {why}" if why else "")


def apply(table: dict | None, backends, hardware, central: dict[str, np.ndarray]) -> dict[str, list]:
    """Per case: ``{fig}_lo``, ``{fig}_hi`` (s, as ``central[fig]``; NaN where the central value is
    not finite or there is no table), ``interval`` (calibrated, extrapolated, none) and
    ``interval_reason``."""
    n = len(backends)
    out = {f"{k}_{s}": np.full(n, np.nan) for k in FIGURES for s in ("lo", "hi")}
    out["interval"], out["interval_reason"] = ["none"] * n, ["the accounting has no intervals"] * n
    if table is None:
        return out
    memo = {}
    for i, (b, h) in enumerate(zip(backends, hardware)):
        key = (b, h)
        if key not in memo:
            memo[key] = lookup(table, b, h)
        bd, status, reason = memo[key]
        out["interval"][i], out["interval_reason"][i] = status, reason
        for k in FIGURES if bd is not None else ():
            c = float(central[k][i])
            out[f"{k}_lo"][i], out[f"{k}_hi"][i] = c * bd[k][0], c * bd[k][1]
    return out


def inside(bd: dict | None, r: np.ndarray) -> np.ndarray:
    """[n, 2] bool: the measured value ``p·exp(-r)`` lies in ``[p·lo, p·hi]`` (False where r is not
    finite or there is no band)."""
    r = np.asarray(r, float).reshape(-1, 2)
    if bd is None:
        return np.zeros(r.shape, bool)
    lo = np.array([bd[k][0] for k in FIGURES])
    hi = np.array([bd[k][1] for k in FIGURES])
    m = np.exp(-np.where(np.isfinite(r), r, 0.0))
    return np.isfinite(r) & (m >= lo) & (m <= hi)


def coverage(backend, hardware, labels: dict[str, np.ndarray], cv: dict[str, np.ndarray], min_rows: int = MIN_ROWS) -> list[dict]:
    """Nested out-of-sample coverage (module docstring): one row per grouping (``labels`` keys among
    backend, system, model) and held-out value, ``{"grouping", "value", "n_tpot", "in_tpot",
    "n_ttft", "in_ttft", "tpot", "ttft"}`` (fractions; None when no finite residual)."""
    backend, hardware = np.asarray(backend, str), np.asarray(hardware, str)
    rows = []
    for g in ("backend", "system", "model"):
        if g not in labels:
            continue
        lab = np.asarray(labels[g], str)
        for v in sorted(set(lab)):
            held = lab == v
            table = calibrate(backend[~held], hardware[~held], {k: np.asarray(x)[~held] for k, x in cv.items()}, min_rows)
            hit = np.zeros((int(held.sum()), 2), bool)
            r = np.asarray(cv[g], float)[held]
            keys = list(zip(backend[held], hardware[held]))
            for key in set(keys):
                sel = np.array([k == key for k in keys])
                hit[sel] = inside(lookup(table, *key)[0], r[sel])
            n = np.isfinite(r).sum(axis=0)
            rows.append(
                {
                    "grouping": g,
                    "value": str(v),
                    "n_tpot": int(n[0]),
                    "in_tpot": int(hit[:, 0].sum()),
                    "n_ttft": int(n[1]),
                    "in_ttft": int(hit[:, 1].sum()),
                    "tpot": float(hit[:, 0].sum() / n[0]) if n[0] else None,
                    "ttft": float(hit[:, 1].sum() / n[1]) if n[1] else None,
                }
            )
    return rows


def load(name_or_path: str) -> dict | None:
    """The interval table of an accounting preset (its ``intervals:`` key), or None when it has
    none; a malformed table is a one-line ``SpecError``."""
    from ...catalogue import _read_yaml
    from ...physics.specs import SpecError

    data, where = _read_yaml("accounting", name_or_path)
    table = data.get("intervals")
    if table is None:
        return None
    need = ("systems", "cells", "backends", "families", "all", "new_system", "new_backend")
    missing = [k for k in need if not isinstance(table, dict) or k not in table]
    if missing:
        raise SpecError(f"{where}: intervals.{missing[0]} is missing: the table is written by the serving fit (fit=true)")
    return table


def rounded(table: dict, digits: int = 4) -> dict:
    """The table with every factor rounded to ``digits`` decimals (for the preset file)."""
    if isinstance(table, dict):
        return {k: rounded(v, digits) for k, v in table.items()}
    if isinstance(table, list):
        return [rounded(v, digits) for v in table]
    return round(table, digits) if isinstance(table, float) else table


def entry(bands: dict, j: int) -> dict:
    """Case ``j``'s interval fields for the JSON ``predicted`` entry (None where not finite)."""
    out = {}
    for k in FIGURES:
        for s in ("lo", "hi"):
            v = float(bands[f"{k}_{s}"][j])
            out[f"{k}_{s}"] = v if np.isfinite(v) else None
    return out | {"interval": bands["interval"][j], "interval_reason": bands["interval_reason"][j]}


def pooled(rows: list[dict]) -> dict:
    """Coverage over every held-out value of each grouping: {grouping: {"tpot", "ttft"}} (fractions)."""
    out = {}
    for g in dict.fromkeys(r["grouping"] for r in rows):
        sel = [r for r in rows if r["grouping"] == g]
        out[g] = {k: sum(r[f"in_{k}"] for r in sel) / max(sum(r[f"n_{k}"] for r in sel), 1) for k in FIGURES}
    return out


def for_points(table: dict | None, ev) -> tuple[dict[str, dict], list[int]]:
    """A measurement YAML's evaluation (``evaluate.Evaluation``) with the preset's intervals, engine
    not named: per point id the fields of its ``predicted`` entry (``tpot``/``ttft`` figures times
    their factors; decode entries use the TPOT factors, prefill entries the TTFT ones), and
    [inside, n]: points whose measured figure lies in the interval of its prediction (a time times
    the factors, a rate divided by them), out of sample where the table was not fitted on the file."""
    fields, count = {}, [0, 0]
    for i, p in enumerate(ev.points):
        m = p.measurement
        bd, status, reason = (
            lookup(table, None, m.hardware) if table is not None else (None, "none", "the accounting has no intervals")
        )
        decode = m.phase == "decode"
        tpot = ev.figures[i][0] / m.tokens_per_step if decode and ev.feasible[i] else np.nan
        ttft = ev.figures[i][0] if not decode and ev.feasible[i] else np.nan
        e = {"interval": status, "interval_reason": reason}
        for k, c in (("tpot", tpot), ("ttft", ttft)):
            ok = bd is not None and np.isfinite(c)
            e[f"{k}_lo"], e[f"{k}_hi"] = (float(c * bd[k][0]), float(c * bd[k][1])) if ok else (None, None)
        fields[m.id] = e
        r = float(ev.log_ratio[i])
        if bd is not None and np.isfinite(r):
            lo, hi = bd["tpot" if decode else "ttft"]
            x = np.exp(-r) if m.figure == "step_time" else np.exp(r)  # measured/predicted of the time
            count[0] += int(lo <= x <= hi)
            count[1] += 1
    return fields, count
