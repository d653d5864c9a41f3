"""80 % prediction intervals for serving predictions (TPOT, TTFT), derived from the grouped
cross-validation residuals of the serving fit, and their out-of-sample coverage.

A residual is ``r = log(predicted / measured)``, out of sample. The interval of a prediction ``p``
is ``[p·lo, p·hi]`` with the factors ``lo = exp(-max(q_hi, 0))`` and ``hi = exp(-min(q_lo, 0))``,
``q_lo``/``q_hi`` the 10th/90th percentiles of the residuals (``LEVEL``): the measured value is
``p·exp(-r)``, so 80 % of the calibration rows lie inside. Clamping at zero keeps ``lo ≤ 1 ≤ hi``
(the central value inside) when the residuals are biased to one side; it only widens.

A new model's error is its own bias plus the scatter of its rows, and the bias is what a cell's few
models cannot show: the rows of one engine on one hardware family come from three to six models, so
their percentiles miss a new model whose bias is unlike theirs (in the silicon corpus, Llama-3.1-70B's
TTFT is ×2 high while vLLM's other models are near ×1). The leave-one-model-out bands are therefore
random-effects bands (``effects_band``): the percentiles of every sum ``u + e`` of the bias ``u`` of
a (model, backend) pair of the calibration data (the median of its residuals: every pair, of every
engine and system, is one draw of a new model's bias) and a row's deviation ``e`` from its own pair's
median (the cell's scatter). With one model, or one row per model, this is the plain percentile band.

The table (``calibrate``, stored under ``intervals:`` in the accounting preset by the fit):

- ``cells[backend][family]``, ``backends[backend]``, ``families[family]``, ``all``: from the
  leave-one-model-out residuals (the error on a deployment moejax was not fitted on, on a system and
  engine it was), as random-effects bands: the interval of a case whose system and backend are in
  the calibration data. A cell with fewer than ``MIN_ROWS`` residuals is not used (its backend's
  interval is).
- ``new_system[family | "all"]``: leave-one-system-out residuals; ``new_backend[family | "all"]``:
  leave-one-backend-out residuals (plain bands): the spread of a case on a system (an engine) the fit
  never saw.

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
rows' residuals of that grouping's cross-validation are counted inside. The held-out models' rows are
also counted per backend and per system: the coverage a user of a new model sees on each engine and
system.
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


def _factors(x: np.ndarray) -> list[float]:
    """[lo, hi] on the central value from a sample of log residuals (module docstring)."""
    q_lo, q_hi = np.quantile(x, QUANTILES)
    return [float(np.exp(-max(q_hi, 0.0))), float(np.exp(-min(q_lo, 0.0)))]


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
        out[k] = _factors(x)
    return out


def pair_effects(r: np.ndarray, pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the median log residual of each (model, backend) ``pair`` label [m, 2], NaN where a pair has
    no finite residual of a figure; each row's deviation from its pair's median [n, 2]).

    Pair A with residuals 0.0, 0.1, 0.2 and pair B with 1.0, 1.0, 1.0: effects 0.1 and 1.0;
    deviations -0.1, 0, 0.1, 0, 0, 0.
    """
    r, pair = np.asarray(r, float).reshape(-1, 2), np.asarray(pair, str)
    u = np.full((len(set(pair)), 2), np.nan)
    dev = np.full(r.shape, np.nan)
    for i, q in enumerate(sorted(set(pair))):
        sel = pair == q
        for j in range(2):
            x = r[sel, j]
            if np.isfinite(x).any():
                u[i, j] = np.nanmedian(x)
                dev[sel, j] = x - u[i, j]
    return u, dev


def effects_band(dev: np.ndarray, effects: np.ndarray) -> dict | None:
    """The random-effects band (module docstring): ``band`` of every sum of a pair effect
    (``effects`` [m, 2], ``pair_effects``) and a row's deviation (``dev`` [n, 2], the rows at hand);
    ``n`` is the rows at hand. None when a figure has fewer than 2 finite deviations or no effect.

    A cell of pair A's rows (deviations -0.1, 0, 0.1), effects 0.1 (A) and 1.0 (B): the sums 0, 0.1,
    0.2, 0.9, 1.0, 1.1 have 10th/90th percentiles 0.05 and 1.05, so the TPOT factors are
    [exp(-1.05), 1] = [0.350, 1]: a new model may be as far off as B; A's own residuals alone give
    [exp(-0.18), 1] = [0.835, 1].
    """
    dev, effects = np.asarray(dev, float).reshape(-1, 2), np.asarray(effects, float).reshape(-1, 2)
    out = {"n": int(np.isfinite(dev).all(axis=1).sum())}
    for j, k in enumerate(FIGURES):
        e, u = dev[np.isfinite(dev[:, j]), j], effects[np.isfinite(effects[:, j]), j]
        if len(e) < 2 or len(u) < 1:
            return None
        out[k] = _factors((u[:, None] + e[None, :]).ravel())
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


def _by(labels: np.ndarray, r: np.ndarray, min_rows: int, effects: np.ndarray | None = None) -> dict:
    """Per label value with at least ``min_rows`` rows: ``band`` of its residuals ``r``, or with
    ``effects`` the ``effects_band`` of its deviations ``r``."""
    out = {}
    for v in sorted(set(labels)):
        sel = labels == v
        b = band(r[sel]) if effects is None else effects_band(r[sel], effects)
        if b is not None and b["n"] >= min_rows:
            out[str(v)] = b
    return out


def calibrate(backend, hardware, model, cv: dict[str, np.ndarray], min_rows: int = MIN_ROWS) -> dict:
    """The interval table from per-row labels (``backend``, ``hardware`` catalogue names, ``model``)
    and the cross-validation residuals ``cv[grouping]`` [n, 2] (``model``, ``system``, ``backend``):
    random-effects bands from the leave-one-model-out residuals, plain bands for a new system or
    backend (module docstring)."""
    backend, hardware, model = np.asarray(backend, str), np.asarray(hardware, str), np.asarray(model, str)
    fam = np.array([family(h) for h in hardware])
    lomo, loso, lobo = (np.asarray(cv[g], float) for g in ("model", "system", "backend"))
    u, dev = pair_effects(lomo, np.char.add(np.char.add(model, "\t"), backend))
    cells = {str(b): _by(fam[backend == b], dev[backend == b], min_rows, u) for b in sorted(set(backend))}
    return {
        "level": LEVEL,
        "min_rows": min_rows,
        "systems": sorted({str(h) for h in hardware}),
        "cells": cells,
        "backends": _by(backend, dev, 1, u),
        "families": _by(fam, dev, 1, u),
        "all": effects_band(dev, u),
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


def _count(grouping: str, value: str, hit: np.ndarray, r: np.ndarray, per: str | None = None) -> dict:
    n = np.isfinite(r).sum(axis=0)
    return {
        "grouping": grouping,
        "per": per,
        "value": str(value),
        "n_tpot": int(n[0]),
        "in_tpot": int(hit[:, 0].sum()),
        "n_ttft": int(n[1]),
        "in_ttft": int(hit[:, 1].sum()),
        "tpot": float(hit[:, 0].sum() / n[0]) if n[0] else None,
        "ttft": float(hit[:, 1].sum() / n[1]) if n[1] else None,
    }


def coverage(backend, hardware, labels: dict[str, np.ndarray], cv: dict[str, np.ndarray], min_rows: int = MIN_ROWS) -> list[dict]:
    """Nested out-of-sample coverage (module docstring): one row per grouping (``labels`` keys among
    backend, system, model; ``labels["model"]`` is required, the pairs of ``calibrate``) and held-out
    value, ``{"grouping", "per", "value", "n_tpot", "in_tpot", "n_ttft", "in_ttft", "tpot", "ttft"}``
    (fractions; None when no finite residual; ``per`` None); then, for the model grouping, the
    held-out rows counted per backend and per system (``per`` "backend" or "system", ``value`` the
    backend or system)."""
    backend, hardware = np.asarray(backend, str), np.asarray(hardware, str)
    model = np.asarray(labels["model"], str)
    rows = []
    for g in ("backend", "system", "model"):
        if g not in labels:
            continue
        lab = np.asarray(labels[g], str)
        r = np.asarray(cv[g], float)
        hit = np.zeros(r.shape, bool)
        for v in sorted(set(lab)):
            held = lab == v
            rest = {k: np.asarray(x)[~held] for k, x in cv.items()}
            table = calibrate(backend[~held], hardware[~held], model[~held], rest, min_rows)
            for key in set(zip(backend[held], hardware[held])):
                sel = held & (backend == key[0]) & (hardware == key[1])
                hit[sel] = inside(lookup(table, *key)[0], r[sel])
            rows.append(_count(g, v, hit[held], r[held]))
        if g == "model":
            for per, by in (("backend", backend), ("system", np.asarray(labels.get("system", hardware), str))):
                rows += [_count(g, v, hit[by == v], r[by == v], per) for v in sorted(set(by))]
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
    rows = [r for r in rows if r.get("per") is None]
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
