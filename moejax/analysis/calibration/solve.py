"""Running a calibration problem: each fit optimised (Adam, then L-BFGS) and analysed at its
optimum (identifiability), then all fits collected into the residual table."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...catalogue import load_hardware
from ...engine.grid import PartitionSpace
from ...physics.specs import EXPERT_TRAFFIC, ROOFLINES, SpecError
from .constants import CONSTANTS, DEFAULTS, check_constants, coordinate_name, snap, theta_derivative, to_theta, to_value
from .fits import Fit, Optimizer
from .model import TINY, _constants_dict, _evaluator, _points, _predict, interval_residual, log_residual, reproduced
from .targets import QUANTITIES, Reference, Target

# ------------------------------------------------------------------------------------------------
# Running a fit


@dataclasses.dataclass
class FitResult:
    """One fit's outcome: ``constants`` (every constant's value used, fitted or held), ``fitted``
    (the free ones), loss, identifiability (singular values over free + probed coordinates,
    ``unidentifiable`` combinations and their null vectors) and per-target predictions."""

    fit: Fit
    constants: dict
    fitted: dict
    loss: float
    loss_start: float
    coordinates: list
    jacobian: np.ndarray
    singular_values: np.ndarray
    unidentifiable: list
    null_vectors: list
    targets: list
    fitted_mask: np.ndarray
    notes: list
    calibrated: np.ndarray
    default: np.ndarray
    partitions: list
    at_bound: list
    rms_log_residual: float = math.nan


def circuits(jac: np.ndarray, names: list[str], rtol: float) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Minimal sets of columns of ``jac`` that are linearly dependent to ``rtol`` (columns scaled
    to unit norm; a column below ``rtol`` of the largest is dependent on its own), each with its
    null vector (in the original column coordinates, unit norm).

    >>> import numpy as np
    >>> j = np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    >>> [c for c, _ in circuits(j, ["a", "b", "c"], 1e-9)]
    [(2,), (0, 1)]
    """
    norms = np.linalg.norm(jac, axis=0)
    big = norms.max() if norms.size and norms.max() > 0 else 1.0
    found: list = []
    n = jac.shape[1]
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            if any(set(c).issubset(subset) for c, _ in found):
                continue
            if size == 1:
                if norms[subset[0]] <= rtol * big:
                    v = np.zeros(n)
                    v[subset[0]] = 1.0
                    found.append((subset, v))
                continue
            cols = jac[:, subset] / norms[list(subset)]
            _, s, vt = (
                np.linalg.svd(cols, full_matrices=False)
                if cols.shape[0] >= size
                else np.linalg.svd(np.vstack([cols, np.zeros((size - cols.shape[0], size))]), full_matrices=False)
            )
            if s[-1] <= rtol * s[0]:
                v = np.zeros(n)
                v[list(subset)] = vt[-1] / norms[list(subset)]
                found.append((subset, v / np.linalg.norm(v)))
    return found


def run_fit(ref: Reference, fit: Fit, hw, held: dict, optimizer: Optimizer, rtol: float) -> FitResult:
    """Fit ``fit.free`` (others held at ``held``), then evaluate and analyse at the optimum."""
    all_targets = [t for t in ref.targets if fit.selects(t)]
    notes, use = [], []
    for t in all_targets:
        why = fit.exclusion(t)
        if t.normaliser:
            why = "normaliser: equal to the printed value by definition"
        elif t.duplicate_of:
            why = f"printed twice: fitted as {t.duplicate_of}"
        notes.append(why or "")
        use.append(why is None)
    use = np.array(use)
    if not use.any():
        raise SpecError(f"fits.{fit.name}: every selected target is excluded: nothing to fit")
    pts = _points(ref, fit, all_targets)
    evaluate = _evaluator(fit, hw, pts)
    smooth = functools.partial(evaluate, integer=False)
    exact = functools.partial(evaluate, integer=True)
    fitted_targets = [t for t, u in zip(all_targets, use) if u]
    low = jnp.array([t.aim[0] for t in fitted_targets])
    high = jnp.array([t.aim[1] for t in fitted_targets])
    held = {**DEFAULTS, **held, **fit.fixed}
    free = list(fit.free)

    def values(theta):
        return {**_constants_dict(held), **{k: to_value(k, theta[i]) for i, k in enumerate(free)}}

    @jax.jit
    def loss(theta):
        pred = _predict(fitted_targets, pts, smooth(values(theta)))
        return jnp.mean(interval_residual(pred, low, high) ** 2)

    start = {k: fit.init.get(k, CONSTANTS[k].init) for k in free}
    theta0 = jnp.array([to_theta(k, start[k]) for k in free])
    theta = _optimise(loss, theta0, optimizer)
    snapped = {k: snap(k, float(to_value(k, theta[i]))) for i, k in enumerate(free)}
    fitted = {k: v for k, (v, _) in snapped.items()}
    at_bound = [k for k, (_, b) in snapped.items() if b]
    constants = {**held, **fitted}

    # identifiability over free + probed coordinates, at the optimum
    names = free + [k for k in fit.probe]
    point = np.array([constants[k] for k in names])
    scale = np.array([theta_derivative(k, constants[k]) for k in names])

    def log_pred(x):
        pred = _predict(fitted_targets, pts, smooth({**_constants_dict(constants), **{k: x[i] for i, k in enumerate(names)}}))
        return jnp.log(jnp.maximum(pred, TINY))

    jac = np.asarray(jax.jit(jax.jacfwd(log_pred))(jnp.asarray(point))) * scale[None, :]
    jac = np.where(np.isfinite(jac), jac, 0.0)
    sv = np.linalg.svd(jac, compute_uv=False) if jac.size else np.zeros(0)
    found = circuits(jac, names, rtol)
    coords = [coordinate_name(k, constants[k]) for k in names]
    unident = [" ~ ".join(names[i] for i in c) for c, _ in found]

    q_exact = exact(_constants_dict(constants))
    calibrated = np.asarray(_predict(all_targets, pts, q_exact))
    same = fit.expert_traffic == "physical" and fit.roofline == "phase"
    physical = evaluate if same else _evaluator(dataclasses.replace(fit, expert_traffic="physical", roofline="phase"), hw, pts)
    q_default = physical(_constants_dict(DEFAULTS), True)
    default = np.asarray(_predict(all_targets, pts, q_default))
    degrees = np.asarray(q_exact["degrees"])
    index = {k: i for i, k in enumerate(pts.keys)}
    partitions = [_partition_label(degrees[index[t.point()]]) for t in all_targets]
    final = float(loss(theta))
    return FitResult(
        fit=fit,
        constants=constants,
        fitted=fitted,
        loss=final,
        loss_start=float(loss(theta0)),
        coordinates=coords,
        jacobian=jac,
        singular_values=sv,
        unidentifiable=unident,
        null_vectors=[v for _, v in found],
        targets=all_targets,
        fitted_mask=use,
        notes=notes,
        calibrated=calibrated,
        default=default,
        partitions=partitions,
        at_bound=at_bound,
    )


def _partition_label(d) -> str:
    tp, ep, pp, dp, dp_attn, kvp, mode = (int(round(float(x))) for x in d)
    if tp == 0:
        return "none feasible"
    parts = [f"TP{tp}", f"EP{ep}"]
    if kvp > 1:
        parts.append(f"{'KVP' if mode == 1 else 'CP'}{kvp}")
    for name, v in (("DPattn", dp_attn), ("PP", pp), ("DP", dp)):
        if v > 1:
            parts.append(f"{name}{v}")
    return "x".join(parts)


def _optimise(loss, theta, opt: Optimizer):
    """Adam then L-BFGS on ``loss(theta)`` (jitted); returns the best iterate seen. Adam runs as
    Python steps around one compiled value-and-gradient; L-BFGS as one compiled scan."""
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    best_theta, best = theta, math.inf

    def keep(theta, v):
        nonlocal best, best_theta
        if math.isfinite(v) and v < best:
            best, best_theta = v, theta

    v, g = value_and_grad(theta)
    keep(theta, float(v))
    if opt.adam_steps > 0 and best > 0:
        adam = optax.adam(opt.learning_rate)
        state = adam.init(theta)
        update = jax.jit(adam.update)
        for _ in range(opt.adam_steps):
            upd, state = update(jnp.where(jnp.isfinite(g), g, 0.0), state, theta)
            theta = optax.apply_updates(theta, upd)
            v, g = value_and_grad(theta)
            keep(theta, float(v))
            if best == 0.0:
                break
    if opt.lbfgs_steps > 0 and best > 0:
        solver = optax.lbfgs()

        @jax.jit
        def lbfgs_steps(theta):
            def body(carry, _):
                theta, state = carry
                v, g = optax.value_and_grad_from_state(loss)(theta, state=state)
                upd, state = solver.update(g, state, theta, value=v, grad=g, value_fn=loss)
                return (optax.apply_updates(theta, upd), state), (v, theta)

            (theta, _), (vs, thetas) = jax.lax.scan(body, (theta, solver.init(theta)), None, length=opt.lbfgs_steps)
            return theta, vs, thetas

        last, vs, thetas = lbfgs_steps(best_theta)
        vs = np.asarray(vs)
        if np.isfinite(vs).any():
            i = int(np.nanargmin(np.where(np.isfinite(vs), vs, np.inf)))
            keep(thetas[i], float(vs[i]))
        keep(last, float(loss(last)))
    return best_theta


# ------------------------------------------------------------------------------------------------
# A whole problem


RESIDUAL_FIELDS = [
    ("fit", "U24"),
    ("id", "U32"),
    ("table", "i4"),
    ("row", "U40"),
    ("column", "U24"),
    ("quantity", "U20"),
    ("published", "f8"),
    ("printed", "U12"),
    ("physical_default", "f8"),
    ("calibrated", "f8"),
    ("rel_residual_default", "f8"),
    ("rel_residual_calibrated", "f8"),
    ("log_residual_calibrated", "f8"),
    ("reproduced", "?"),
    ("fitted", "?"),
    ("partition", "U40"),
    ("note", "U600"),
]


@dataclasses.dataclass
class CalibrationResult:
    """All fits of a problem: ``fits`` (``FitResult`` in order), ``table`` (structured array, one
    row per target and fit: ``RESIDUAL_FIELDS``), ``constants`` (the fitted value of every free
    constant, later fits winning), ``rms_log_residual`` (over fitted targets, exact model) and
    ``unidentifiable`` ("fit: a ~ b" strings)."""

    reference: Reference
    fits: list
    table: np.ndarray
    constants: dict
    rms_log_residual: float
    unidentifiable: list


def _relative(t: Target, pred: float) -> float:
    if t.oom or t.value == 0:
        return math.nan
    return pred / t.value - 1.0


def check_fit(fit: Fit, ref: Reference, earlier: list[str]) -> None:
    where = f"fits.{fit.name}"
    for q in fit.quantities:
        if q not in QUANTITIES:
            raise SpecError(f"{where}.quantities = {q!r} is invalid: allowed {', '.join(QUANTITIES)}")
    if fit.expert_traffic not in EXPERT_TRAFFIC:
        raise SpecError(f"{where}.expert_traffic = {fit.expert_traffic!r} is invalid: allowed {', '.join(EXPERT_TRAFFIC)}")
    if fit.roofline not in ROOFLINES:
        raise SpecError(f"{where}.roofline = {fit.roofline!r} is invalid: allowed {', '.join(ROOFLINES)}")
    if fit.partition not in ("paper", "search"):
        raise SpecError(f"{where}.partition = {fit.partition!r} is invalid: allowed paper, search")
    for field in ("free", "probe"):
        for name in getattr(fit, field):
            if name not in CONSTANTS:
                raise SpecError(f"{where}.{field} = {name!r} is invalid: allowed {', '.join(CONSTANTS)}")
    if not fit.free:
        raise SpecError(f"{where}.free = [] is invalid: name at least one constant to fit")
    both = set(fit.free) & set(fit.probe)
    if both:
        raise SpecError(f"{where}.probe = {sorted(both)[0]!r} is invalid: already free")
    check_constants(dict(fit.fixed), f"{where}.fixed")
    check_constants(dict(fit.init), f"{where}.init")
    if fit.inherit is not None and fit.inherit not in earlier:
        raise SpecError(
            f"{where}.inherit = {fit.inherit!r} is invalid: must name an earlier fit ({', '.join(earlier) or 'none'})"
        )
    targets = [t for t in ref.targets if fit.selects(t)]
    if not targets:
        raise SpecError(
            f"{where}: selects no target of the reference (quantities {list(fit.quantities)}, tables {list(fit.tables)})"
        )
    if fit.partition == "paper":
        missing = sorted({t.num_gpus for t in targets} - set(ref.partitions))
        if missing:
            raise SpecError(f"{where}.partition = 'paper' is invalid: the reference states no partition for {missing[0]} GPUs")
    if any(t.quantity != "b_max" for t in targets) and ("weight_scale" in fit.free or fit.fixed.get("weight_scale", 1.0) != 1.0):
        raise SpecError(
            f"{where}.weight_scale is invalid here: it is not an Accounting constant, so it applies to b_max targets only"
        )
    if fit.partition == "search":
        unknown = sorted(set(fit.search_space) - {f.name for f in dataclasses.fields(PartitionSpace)})
        if unknown:
            raise SpecError(f"{where}.search_space.{unknown[0]} is not a known field: allowed tp, ep, pp, dp_attn, kvp, kv_modes")
    _points(ref, fit, targets)  # catalogue entries, baselines and partitions: errors before any fitting


def calibrate(ref: Reference, fits: list[Fit], optimizer: Optimizer | None = None, rtol: float = 1e-6) -> CalibrationResult:
    """Run ``fits`` in order against ``ref`` and collect the residual table.

    Errors in the problem (names, domains, an empty selection) are one-line ``SpecError``s raised
    before any fitting.
    """
    optimizer = optimizer or Optimizer()
    names = []
    for fit in fits:
        if fit.name in names:
            raise SpecError(f"fits.{fit.name} is invalid: fit names must be unique")
        check_fit(fit, ref, names)
        names.append(fit.name)
    hw = load_hardware(ref.hardware, **ref.hardware_overrides)
    results: dict[str, FitResult] = {}
    for fit in fits:
        held = dict(results[fit.inherit].constants) if fit.inherit else {}
        results[fit.name] = run_fit(ref, fit, hw, held, optimizer, rtol)
    rows, logs = [], []
    for r in results.values():
        mine = []
        for t, use, note, cal, dflt, part in zip(r.targets, r.fitted_mask, r.notes, r.calibrated, r.default, r.partitions):
            lr = log_residual(t, float(cal)) if float(cal) > 0 or t.oom or t.value == 0 else -math.inf
            if use:
                mine.append(lr)
                logs.append(lr)
            rows.append(
                (
                    r.fit.name,
                    t.id,
                    t.table,
                    t.row,
                    t.column,
                    t.quantity,
                    t.value,
                    t.printed,
                    float(dflt),
                    float(cal),
                    _relative(t, float(dflt)),
                    _relative(t, float(cal)),
                    lr,
                    reproduced(t, float(cal)),
                    bool(use),
                    part,
                    note,
                )
            )
        r.rms_log_residual = float(np.sqrt(np.mean(np.square(mine))))
    table = np.array(rows, dtype=RESIDUAL_FIELDS)
    logs = np.array(logs)
    rms = float(np.sqrt(np.mean(logs**2))) if logs.size else math.nan
    constants = {}
    for r in results.values():
        constants.update(r.fitted)
    unident = [f"{r.fit.name}: {u}" for r in results.values() for u in r.unidentifiable]
    return CalibrationResult(ref, list(results.values()), table, constants, rms, unident)
