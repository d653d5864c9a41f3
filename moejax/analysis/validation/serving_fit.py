"""Global accounting constants fitted to measured serving benchmarks (TPOT and TTFT), with grouped
cross-validation: the error a user of a new model, system or backend will see.

The free constants (Accounting leaves, one set for all rows, never per row; the ``profiled`` ones get
one offset per engine profile, ``δ_backend`` on the global value's coordinate, with an L2 penalty
``PENALTY·Σδ²`` that holds a backend without rows at the global value) minimise the sum of
the TPOT and the TTFT mean pseudo-Huber loss ``δ²(sqrt(1 + (r/δ)²) - 1)`` (``δ = 0.25``) of the
log residuals ``r = log(predicted / measured)`` over the feasible rows: quadratic for small
residuals, linear beyond ×1.3, so a few rows the model cannot express (an admission wait on an
undisclosed batch cap) do not steer the constants. Optax Adam, cosine-decayed learning rate, on the
unconstrained coordinates of ``fit.to_coordinate``; gradients through the vmapped kernel.

Grouped cross-validation: for each grouping (model, system, backend) and each of its values, the
constants are refitted without that value's rows and predict them; every row thus gets one
out-of-sample prediction per grouping. All folds run in one compiled program (a vmap over loss
weights).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...physics.specs import Accounting
from ..calibration.constants import CONSTANTS
from .benchmarks import Case, predict_mode, stack_modes
from .evaluate import per_point
from .fit import from_coordinate, preset_yaml, to_coordinate

# The end-to-end constants a serving fit frees by default, on top of a kernel-calibrated preset
# (``accounting=kernel``: every kernel time comes from kernel-level measurements). Grouped CV on the
# silicon corpus (sweeps/serving/SILICON.md) with these four: TPOT x1.15 out of sample (x1.15-1.16 without
# step_latency, whose fit moved the host time from per sequence to per step: TPOT at 4 clients was 5-20 %
# short, at 64-256 5-15 % long); freeing every efficiency and the per-layer latency as well (11 constants
# from ``accounting=layered``, the previous release's preset) did no better out of sample (x1.16-1.18).
# attention_efficiency is never free: fitted end to end it leaves the physical range (3.2: attention
# FLOPs at 2.5x the tensor-core peak).
FREE = ("request_overhead", "warmup_share", "sequence_latency", "step_latency")
CV_GROUPS = ("model", "system", "backend")
# Per engine profile (backend): the front end's time per request, the benchmark harness's share of
# start-up-wave requests (each engine's harness sends its own number of requests per client), and the
# engine's host time per step (its scheduler).
PROFILED = ("request_overhead", "warmup_share", "step_latency")
PENALTY = 0.01
DELTA = 0.25


@dataclasses.dataclass
class ServingFit:
    """Fitted constants on every row; per grouping, the out-of-fold log residuals [n, 2] (TPOT,
    TTFT) and each fold's constants; the in-sample log residuals."""

    free: tuple[str, ...]
    constants: dict[str, float]
    profiles: dict[str, dict[str, float]]
    in_sample: np.ndarray
    cv: dict[str, np.ndarray]
    fold_constants: dict[str, dict[str, dict[str, float]]]


def _inputs(cases: list[Case], backends: list[str]):
    stacks = stack_modes(cases)
    order = np.argsort(np.concatenate([s.index for s in stacks]))
    data = tuple(
        {
            "inputs": s.inputs,
            "measured": s.measured,
            "backend": np.array([backends.index(cases[i].row.backend) for i in s.index]),
        }
        for s in stacks
    )
    return tuple(s.mode for s in stacks), data, order


def _values(theta, free, profiled, n_backends):
    """{constant: value [n_backends]}: global values; a ``profiled`` one per engine at its coordinate
    plus ``δ_backend`` (``fit.from_coordinate``: a factor ``exp(δ)`` on a time, and a share or an
    efficiency stays in its range)."""
    deltas = theta[len(free) :].reshape(-1, n_backends)
    out, p = {}, 0
    for j, k in enumerate(free):
        coordinate = theta[j] * jnp.ones(n_backends)
        if k in profiled:
            coordinate, p = coordinate + deltas[p], p + 1
        out[k] = from_coordinate(k, coordinate)
    return out


def _residuals(theta, modes, data, order, base: Accounting, free, profiled, n_backends):
    """(log residuals [n, 2] in case order, feasible [n]) at coordinates ``theta``."""
    rs, oks = [], []
    values = _values(theta, free, profiled, n_backends)
    for mode, d in zip(modes, data):
        n = d["measured"].shape[0]
        acc = dataclasses.replace(per_point(base, n), **{k: v[d["backend"]] for k, v in values.items()})
        out = predict_mode(mode, *d["inputs"], acc)
        pred = jnp.stack([out["tpot"], out["ttft"]], axis=-1)
        ok = out["feasible"] & jnp.all(jnp.isfinite(pred) & (pred > 0), axis=-1)
        rs.append(jnp.where(ok[:, None], jnp.log(jnp.where(ok[:, None], pred, 1.0) / d["measured"]), 0.0))
        oks.append(ok)
    return jnp.concatenate(rs)[order], jnp.concatenate(oks)[order]


def _loss(r, ok, w):
    wk = (w * ok)[:, None]
    huber = DELTA**2 * (jnp.sqrt(1 + (r / DELTA) ** 2) - 1)
    return jnp.sum(jnp.sum(wk * huber, axis=0) / jnp.maximum(jnp.sum(wk, axis=0), 1.0))


@functools.partial(jax.jit, static_argnames=("modes", "free", "profiled", "steps", "n_backends"))
def _program(theta0, masks, data, order, base, modes, free, profiled, steps, learning_rate, n_backends):
    residuals = lambda t: _residuals(t, modes, data, order, base, free, profiled, n_backends)  # noqa: E731
    adam = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-3))
    penalty = lambda t: PENALTY * jnp.sum(t[len(free) :] ** 2)  # noqa: E731

    def solve(w):
        def step(carry, _):
            theta, state = carry
            grad = jax.grad(lambda t: _loss(*residuals(t), w) + penalty(t))(theta)
            updates, state = adam.update(grad, state, theta)
            return (optax.apply_updates(theta, updates), state), None

        (theta, _), _ = jax.lax.scan(step, (theta0, adam.init(theta0)), None, length=steps)
        return theta

    thetas = jax.vmap(solve)(masks)
    r, ok = jax.vmap(residuals)(thetas)
    return thetas, r, ok


def fit_serving(
    cases: list[Case],
    base: Accounting,
    free=FREE,
    profiled=PROFILED,
    steps: int = 400,
    learning_rate: float = 0.05,
    groups=CV_GROUPS,
) -> ServingFit:
    """Fit ``free`` on every case, and once per held-out group value (module docstring); the
    ``profiled`` ones among them get one value per engine profile."""
    profiled = tuple(k for k in free if k in profiled)
    backends = sorted({c.row.backend for c in cases})
    modes, data, order = _inputs(cases, backends)
    labels = {g: np.array([c.row.groups[g] for c in cases]) for g in groups}
    folds = [(None, None)] + [(g, v) for g in groups for v in sorted(set(labels[g]))]
    masks = np.stack([np.ones(len(cases)) if g is None else (labels[g] != v).astype(float) for g, v in folds])
    theta0 = jnp.array(
        [to_coordinate(k, float(getattr(base, k)) if float(getattr(base, k)) > 0 else CONSTANTS[k].init) for k in free]
        + [0.0] * (len(backends) * len(profiled))
    )
    thetas, r, ok = jax.device_get(
        _program(theta0, masks, data, order, base, modes, tuple(free), profiled, steps, learning_rate, len(backends))
    )
    named = lambda t: {k: float(from_coordinate(k, t[j])) for j, k in enumerate(free)}  # noqa: E731
    values = _values(jnp.asarray(thetas[0]), tuple(free), profiled, len(backends))
    profiles = {b: {k: float(values[k][i]) for k in profiled} for i, b in enumerate(backends)}
    r = np.where(ok[..., None], r, np.nan)
    cv, fold_constants = {}, {}
    for g in groups:
        out = np.full((len(cases), 2), np.nan)
        fold_constants[g] = {}
        for i, (fg, v) in enumerate(folds):
            if fg == g:
                held = labels[g] == v
                out[held] = r[i][held]
                fold_constants[g][str(v)] = named(thetas[i])
        cv[g] = out
    return ServingFit(tuple(free), named(thetas[0]), profiles, r[0], cv, fold_constants)


def accounting_yaml(fit: ServingFit, base_yaml: dict, measurements: str, stats: dict, intervals: dict | None = None) -> str:
    """An accounting preset's text (``fit.preset_yaml``) with the fitted constants, the per-engine
    profiles, the fit's provenance (file, date, grouped-CV errors) and, when given, the prediction
    interval table (``intervals.calibrate``)."""
    date = dt.date.today().isoformat()
    how = (
        f"fitted by python -m moejax.validate measurements={measurements} accounting=kernel fit=true ({date}; TPOT and "
        "TTFT of closed-loop "
        "serving benchmarks)"
    )
    head = (
        "# Realistic accounting (the default): kernel-level constants plus end-to-end constants fitted to measured\n"
        "# serving benchmarks, TPOT and TTFT (generated: do not edit; regenerate with python -m moejax.validate\n"
        f"# measurements={measurements} accounting=kernel fit=true;\n"
        "# conf/accounting/realistic.yaml: python sweeps/run.py silicon). One key per Accounting constant,\n"
        "# {value, source}; the constants not fitted are copied, with their sources, from the accounting the fit\n"
        "# started from; profiles: per engine (backend) values; intervals: 80 % prediction intervals\n"
        "# (moejax.analysis.validation.intervals).\n"
    )
    provenance = {"date": date, "measurements": measurements, "free": list(fit.free), **stats}
    return preset_yaml(
        head,
        "constants fitted to measured serving benchmarks (grouped-CV error in provenance)",
        provenance,
        fit.constants,
        how,
        base_yaml,
        "realistic",
        profiles=fit.profiles,
        **({"intervals": intervals} if intervals else {}),
    )
