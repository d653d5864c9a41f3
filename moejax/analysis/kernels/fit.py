"""Fit of the per-kernel cost model to kernel-level measurements, with grouped cross-validation.

Per hardware (and pooled per architecture family) and kernel class, the model of one kernel call is

    t = τ + max(t_bw / η_bw, t_flop / η)        (s)

with ``t_bw = bytes / hbm_bw`` and ``t_flop = FLOPs / F_peak(dtype)`` the speed-of-light times of the
row (``shapes.add_work``). A collective is ``t = τ + t_wire / η_bw``: τ is its small-message floor and
η_bw the fraction of the nominal link bandwidth it reaches. An all-reduce is fitted as the cost model
runs it (``physics.collectives.all_reduce``), the faster of a one-shot and a ring:
``t = τ + min(t_wire / η_bw, ring_latency + t_ring / η_bw)`` (``shapes.all_reduce_ring``).
τ ≥ 0 and η_bw, η ∈ (0, 1] by construction (τ = exp(u), η = sigmoid(v)). The fit minimises the
squared log ratio Σ (ln t_model − ln t_measured)² by Levenberg–Marquardt from a fixed set of starts,
so it is deterministic.

A constant that no row is bound by (no row whose time its term sets) is reported as ``null``: the data
does not pin it. Residuals are |ln(model / measured)|, in sample and leave-one-shape-group-out
(``GROUPS``: the rows of one weight shape, head layout, batch, rank count or size decade are held out
together and predicted from a fit to the others).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import COLLECTIVE_CLASSES, COMPUTE_CLASSES, FAMILY, Rows

STARTS = tuple((np.log(tau), v, w) for tau in (2e-6, 2e-5) for v in (-1.0, 1.5) for w in (-1.0, 1.5))
BOUNDS = (np.log(1e-9), np.log(1e-2)), (-12.0, 12.0), (-12.0, 12.0)
# columns whose values form a held-out group, tried in order (the first with ≥ 2 distinct values is used)
GROUPS = {
    "gemm": ("n", "k"),
    "grouped_gemm": ("hidden", "inter", "experts", "n", "k"),
    "attn_decode_gqa": ("heads", "kv_heads"),
    "attn_prefill_gqa": ("heads", "kv_heads"),
    "attn_decode_mla": ("batch",),
    "attn_prefill_mla": ("batch",),
    "elementwise": ("decade",),
}
COLLECTIVE_GROUPS = ("ranks", "decade")


@dataclass
class Fit:
    """Fitted constants of one (hardware or family, class[, implementation]) key and the rows behind them."""

    tau: float | None
    eta_bw: float | None
    eta: float | None
    rows: int
    bound: dict[str, int]
    abs_log: np.ndarray
    cv_abs_log: np.ndarray


def _terms(p: np.ndarray, t_bw: np.ndarray, t_flop: np.ndarray, ring=None):
    """(τ, η_bw, η, bandwidth term, its wire part over η_bw, FLOP term) in s; with ``ring`` =
    (t_ring, ring_latency) the bandwidth term is the faster algorithm's (``ring_latency + t_ring/η_bw``
    where that is below ``t_bw/η_bw``)."""
    tau, eta_bw, eta = np.exp(p[0]), 1.0 / (1.0 + np.exp(-p[1])), 1.0 / (1.0 + np.exp(-p[2]))
    bw = wire = t_bw / eta_bw
    if ring is not None:
        alt = ring[1] + ring[0] / eta_bw
        wire = np.where(alt < bw, ring[0] / eta_bw, bw)
        bw = np.minimum(bw, alt)
    return tau, eta_bw, eta, bw, wire, t_flop / eta


def model(p: np.ndarray, t_bw: np.ndarray, t_flop: np.ndarray, ring=None) -> np.ndarray:
    """Model time (s) for unconstrained parameters ``p = (ln τ, logit η_bw, logit η)`` (``ring``: ``_terms``).

    Example: τ = 5 µs, η_bw = 0.8, η = 0.5, a row with t_bw = 40 µs and t_flop = 10 µs takes
    5 + max(40/0.8, 10/0.5) = 55 µs; an all-reduce with t_wire = 40 µs, t_ring = 10 µs and
    ring_latency = 26 µs takes 5 + min(50, 26 + 12.5) = 43.5 µs.
    """
    tau, _, _, bw, _, fl = _terms(p, t_bw, t_flop, ring)
    return tau + np.maximum(bw, fl)


def residual_jacobian(
    p: np.ndarray, t_bw: np.ndarray, t_flop: np.ndarray, y: np.ndarray, ring=None
) -> tuple[np.ndarray, np.ndarray]:
    """Log residuals ``ln t_model − y`` and their Jacobian with respect to ``p`` (rows × 3)."""
    tau, eta_bw, eta, bw, wire, fl = _terms(p, t_bw, t_flop, ring)
    pred = tau + np.maximum(bw, fl)
    on_bw = bw >= fl
    jac = np.stack(
        [tau / pred, np.where(on_bw, -wire * (1 - eta_bw), 0.0) / pred, np.where(on_bw, 0.0, -fl * (1 - eta)) / pred], axis=1
    )
    return np.log(pred) - y, jac


def solve(t_bw: np.ndarray, t_flop: np.ndarray, t: np.ndarray, starts=STARTS, iters: int = 200, ring=None) -> np.ndarray:
    """Least squares in log space by Levenberg–Marquardt from each start; the best end point ``(ln τ, logit η_bw, logit η)``.

    A parameter whose term no row uses (zero Jacobian column) keeps its start value; callers report it as unpinned.
    """
    y = np.log(t)
    lo, hi = np.array([b[0] for b in BOUNDS]), np.array([b[1] for b in BOUNDS])
    best, best_cost = None, np.inf
    for start in starts:
        p, lam = np.array(start, dtype=float), 1e-3
        r, jac = residual_jacobian(p, t_bw, t_flop, y, ring)
        cost = r @ r
        for _ in range(iters):
            a = jac.T @ jac
            step = np.linalg.solve(a + lam * (np.diag(np.diag(a)) + 1e-9 * np.eye(3)), -(jac.T @ r))
            q = np.clip(p + step, lo, hi)
            r_new, jac_new = residual_jacobian(q, t_bw, t_flop, y, ring)
            cost_new = r_new @ r_new
            if cost_new < cost:
                done = cost - cost_new < 1e-12 * (1.0 + cost)
                p, r, jac, cost, lam = q, r_new, jac_new, cost_new, lam / 3.0
                if done:
                    break
            else:
                lam *= 4.0
                if lam > 1e10:
                    break
        if cost < best_cost - 1e-12:
            best, best_cost = p, cost
    return best


def decade_of(rows: Rows) -> np.ndarray:
    """Size decade of each row (log10 of the size in bytes, floored): a held-out group for size sweeps."""
    return np.floor(np.log10(np.maximum(rows["bytes"], 1.0)))


def groups_of(rows: Rows, kernel_class: str) -> np.ndarray:
    """The held-out group label of each row (``GROUPS``; collectives: rank count, else size decade)."""
    keys = GROUPS.get(kernel_class, COLLECTIVE_GROUPS)
    cols = {**rows.cols, "decade": decade_of(rows)}
    for key in keys:
        if len(np.unique(cols[key])) >= 2:
            return cols[key]
    return np.zeros(len(rows))


def fit_rows(rows: Rows, kernel_class: str) -> Fit:
    """Fit one key's rows: constants, rows bound by each term, in-sample and leave-one-group-out |ln ratio|."""
    collective = kernel_class in COLLECTIVE_CLASSES
    t_bw = rows["t_wire"] if collective else rows["t_bw"]
    t_flop = np.zeros(len(rows)) if collective else rows["t_flop"]
    t = rows["time_s"]
    ring = (rows["t_ring"], rows["ring_latency"]) if kernel_class == "all_reduce" else None
    p = solve(t_bw, t_flop, t, ring=ring)
    pred = model(p, t_bw, t_flop, ring)
    tau, eta_bw, eta, bw, _, fl = _terms(p, t_bw, t_flop, ring)
    bound = {
        "tau": int(np.sum(tau >= np.maximum(bw, fl))),
        "bw": int(np.sum((bw >= fl) & (bw > tau))),
        "flops": int(np.sum((fl > bw) & (fl > tau))),
    }
    labels = groups_of(rows, kernel_class)
    part = lambda mask: None if ring is None else (ring[0][mask], ring[1][mask])  # noqa: E731
    cv = []
    for g in np.unique(labels):
        held = labels == g
        if np.sum(~held) >= 3:
            q = solve(t_bw[~held], t_flop[~held], t[~held], starts=(tuple(p),), ring=part(~held))
            cv.append(np.abs(np.log(model(q, t_bw[held], t_flop[held], part(held)) / t[held])))
    return Fit(
        tau=float(tau) if np.any(tau >= 0.2 * pred) else None,
        eta_bw=float(eta_bw) if bound["bw"] else None,
        eta=float(eta) if bound["flops"] else None,
        rows=len(rows),
        bound=bound,
        abs_log=np.abs(np.log(pred / t)),
        cv_abs_log=np.concatenate(cv) if cv else np.zeros(0),
    )


PER_DTYPE = ("gemm", "grouped_gemm")  # GEMM kernels differ by dtype (BF16, FP8 per-tensor, FP8 blocks, NVFP4): one key each


def variants(rows: Rows) -> np.ndarray:
    """Each row's key variant: the dtype for GEMM classes, the implementation family for collectives, else ""."""
    return np.array(
        [
            i.split("_")[0] if c in COLLECTIVE_CLASSES else d if c in PER_DTYPE else ""
            for c, d, i in zip(rows["kernel_class"], rows["dtype"], rows["impl"], strict=True)
        ],
        dtype=object,
    )


def places(rows: Rows, pooled: bool) -> np.ndarray:
    """Each row's hardware, or its architecture family (``shapes.FAMILY``) when ``pooled``."""
    return np.array([FAMILY.get(h, h) for h in rows["hardware"]], dtype=object) if pooled else rows["hardware"]


def keys_of(rows: Rows, pooled: bool) -> list[tuple[str, str, str]]:
    """The fit keys present: (hardware or family, kernel class, variant)."""
    order = {c: n for n, c in enumerate(COMPUTE_CLASSES + COLLECTIVE_CLASSES)}
    keys = set(zip(places(rows, pooled), rows["kernel_class"], variants(rows), strict=True))
    return sorted(keys, key=lambda k: (k[0], order[k[1]], k[2]))


def select(rows: Rows, key: tuple[str, str, str], pooled: bool) -> Rows:
    """The rows of one key."""
    return rows.take((places(rows, pooled) == key[0]) & (rows["kernel_class"] == key[1]) & (variants(rows) == key[2]))


def fit_all(rows: Rows, pooled: bool = False) -> dict[tuple[str, str, str], Fit]:
    """Fit every key of ``rows`` (per hardware, or per architecture family when ``pooled``)."""
    return {key: fit_rows(select(rows, key, pooled), key[1]) for key in keys_of(rows, pooled)}
