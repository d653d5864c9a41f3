"""The model of every target: B_max with a weight multiplier, a decode point served at B_max
(at the stated partition or the best searched one), each target's prediction in its published
unit, and the residuals against the printed interval."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...catalogue import dense_baseline, load_hardware, load_model
from ...engine.grid import PartitionSpace, enumerate_partitions, partitions_from_table
from ...physics import cost
from ...physics.partition import partition_valid
from ...physics.specs import Accounting, Partition, SpecError, Workload
from .constants import ACCOUNTING_CONSTANTS, DEFAULTS, check_constants
from .fits import Fit
from .targets import Reference, Target


def batch_capacity(m, hw, p: Partition, context, acc: Accounting, weight_scale=1.0):
    """(B_max of one replica in sequences, headroom C/S in sequences per attention group) with
    resident weights counted ``weight_scale`` times (eq. 20).

    ``weight_scale = 1`` is ``moejax.physics.cost.batch_capacity`` exactly. DeepSeek-V3 FP8 on the qs
    reference at TP8 x KVP8, 128k: (180 - 11.73) GB / 1.151 GB per sequence -> 146 sequences.
    """
    budget = hw.hbm_bytes * acc.hbm_usable_fraction - acc.reserve_bytes - weight_scale * cost.resident_weight_bytes(m, p)
    per_group = budget / cost.kv_bytes_per_sequence_gpu(m, p, context, acc)
    whole = jnp.floor(per_group) if acc.integer_batch else per_group
    return jnp.maximum(p.dp_attn * whole, 0.0), per_group


def _decode(m, hw, p, context, acc, weight_scale, integer):
    """``decode_point`` served at B_max and the cluster's concurrent sequences ``dp * B_max``.

    ``acc`` has continuous B (``integer_batch=False``); ``integer`` (traced 0/1) selects whole
    sequences per attention group, served as an explicit batch: exactly the model of
    ``Accounting(integer_batch=True)``, so one compiled program serves the fit and the report.
    """
    b_cont, per_group = batch_capacity(m, hw, p, context, acc, weight_scale)
    b_int = jnp.maximum(p.dp_attn * jnp.floor(per_group), 0.0)
    r = cost.decode_point(m, hw, p, Workload(context=context, batch=jnp.where(integer, b_int, 0.0)), acc)
    return r, p.dp * jnp.where(integer, b_int, b_cont), per_group


def _at(m, hw, p, context, acc, weight_scale, integer):
    """Every quantity a target can read at one point and partition, for the whole cluster of
    ``dp`` replicas: ``b_max`` concurrent sequences, ``throughput`` tokens/s per GPU, and per
    component GPU-seconds per generated token (``t * gpus_per_replica / B``)."""
    r, b_max, _ = _decode(m, hw, p, context, acc, weight_scale, integer)
    per_token = p.gpus_per_replica / jnp.maximum(r.batch, 1.0)
    return {
        "b_max": b_max,
        "throughput": r.throughput_per_gpu,
        "hbm": r.t_hbm * per_token,
        "compute": r.t_compute * per_token,
        "comm": r.t_comm_exposed * per_token,
        "feasible": r.feasible,
        "degrees": jnp.stack([p.tp, p.ep, p.pp, p.dp, p.dp_attn, p.kvp, p.kv_mode]),
    }


def _searched(m, hw, table, mask, context, acc, weight_scale, integer):
    """``_at`` at the best feasible candidate by throughput per GPU (the argmax carries no
    gradient; the winner's quantities do). With no feasible candidate, ``b_max`` is the largest
    headroom C/S over legal candidates: below 1 exactly when no candidate fits one sequence (OOM)."""
    parts = partitions_from_table(table)

    def score(p, ok):
        r, _, per_group = _decode(m, hw, p, context, acc, weight_scale, integer)
        legal = ok & partition_valid(m, p)
        return jnp.where(legal & r.feasible, r.throughput_per_gpu, -1.0), jnp.where(legal, per_group, -1.0)

    s, caps = jax.vmap(score)(parts, mask)
    i = jnp.argmax(jax.lax.stop_gradient(s))
    found = s[i] > 0
    out = _at(m, hw, jax.tree_util.tree_map(lambda x: x[i], parts), context, acc, weight_scale, integer)
    out["b_max"] = jnp.where(found, out["b_max"], jnp.max(caps))
    out["degrees"] = out["degrees"] * found
    return out


@dataclasses.dataclass
class _Points:
    """The distinct evaluation points of a fit, stacked for ``vmap``."""

    keys: list
    rows: Any  # ModelSpec, leaves [n]
    contexts: np.ndarray
    partitions: Any  # paper: Partition leaves [n]; search: (table [n, P, F], mask [n, P])


_ROW_CACHE: dict = {}


def _row(ref: Reference, model: str, variant: str, kappa):
    key = (model, variant, kappa, tuple(sorted(ref.dtypes.items())), ref.baseline)
    if key not in _ROW_CACHE:
        m = load_model(model, **ref.dtypes)
        if variant == "dense":
            m = dense_baseline(m, kappa, ref.baseline)
        _ROW_CACHE[key] = jax.tree_util.tree_map(float, m)
    return _ROW_CACHE[key]


def _stack(specs):
    return jax.tree_util.tree_map(lambda *xs: np.array(xs, dtype=float), *specs)


def _points(ref: Reference, fit: Fit, targets: list[Target]) -> _Points:
    keys = []
    for t in targets:
        for k in (t.point(), t.normaliser_point()):
            if k is not None and k not in keys:
                keys.append(k)
    rows = _stack([_row(ref, k[0], k[1], k[2]) for k in keys])
    contexts = np.array([k[4] for k in keys])
    if fit.partition == "paper":
        parts = []
        for k in keys:
            spec = dict(ref.partitions[k[3]])
            if k[1] == "dense":
                spec["ep"] = 1.0
            spec["dp"] = k[3] / (spec["tp"] * spec["kvp"] * spec["dp_attn"] * spec["pp"])
            parts.append(Partition(**spec))
        return _Points(keys, rows, contexts, _stack(parts))
    space = PartitionSpace(**{k: tuple(v) for k, v in fit.search_space.items()})
    gpus = sorted({k[3] for k in keys})
    tables = {n: enumerate_partitions(n, space) for n in gpus}
    for n, t in tables.items():
        if not len(t):
            raise SpecError(f"fits.{fit.name}.search_space is invalid: no partition divides {n} GPUs")
    width = max(len(t) for t in tables.values())
    table = np.stack([np.concatenate([tables[k[3]], np.repeat(tables[k[3]][:1], width - len(tables[k[3]]), 0)]) for k in keys])
    mask = np.stack([np.arange(width) < len(tables[k[3]]) for k in keys])
    return _Points(keys, rows, contexts, (table, mask))


def _evaluator(fit: Fit, hw, pts: _Points):
    """``f(constants dict, integer) -> per-point quantities``, jitted, for one fit's points;
    ``integer`` 0: continuous B_max (the fit), 1: whole sequences (the exact model, reported)."""
    static = {"expert_traffic": fit.expert_traffic, "roofline": fit.roofline, "integer_batch": False}

    def f(consts, integer):
        acc = Accounting(**{k: consts[k] for k in ACCOUNTING_CONSTANTS}, **static)
        w = consts["weight_scale"]
        if fit.partition == "paper":
            return jax.vmap(lambda m, p, c: _at(m, hw, p, c, acc, w, integer))(pts.rows, pts.partitions, pts.contexts)
        table, mask = pts.partitions
        return jax.vmap(lambda m, t, k, c: _searched(m, hw, t, k, c, acc, w, integer))(pts.rows, table, mask, pts.contexts)

    return jax.jit(f)


def _predict(targets: list[Target], pts: _Points, q: dict):
    """Each target's prediction in its published unit from per-point quantities ``q``."""
    index = {k: i for i, k in enumerate(pts.keys)}
    out = []
    for t in targets:
        i = index[t.point()]
        if t.quantity == "b_max":
            out.append(q["b_max"][i])
        elif t.quantity == "relative_throughput":
            out.append(100.0 * q["throughput"][i] / q["throughput"][index[t.normaliser_point()]])
        else:
            out.append(q[t.component][i] / q[t.per["component"]][index[t.normaliser_point()]])
    return jnp.stack(out)


TINY = 1e-300


def interval_residual(pred, low, high):
    """Log-distance from ``pred`` to ``[low, high]`` (0 inside; ``low = 0``: an upper bound)."""
    lp = jnp.log(jnp.maximum(pred, TINY))
    lo = jnp.where(low > 0, jnp.log(jnp.maximum(low, TINY)), -jnp.inf)
    return jnp.where(lp < lo, lp - lo, jnp.where(lp > jnp.log(high), lp - jnp.log(high), 0.0))


def log_residual(t: Target, pred: float) -> float:
    """Plain log(predicted / published); for a printed bound (OOM, 0) the excess over the bound."""
    if t.oom or (t.quantity != "b_max" and t.value == 0):
        return math.log(max(pred, t.interval[1]) / t.interval[1])
    return math.log(pred / t.value) if pred > 0 else -math.inf


def reproduced(t: Target, pred: float) -> bool:
    """The prediction prints as the published number (B: equal floor; values: same rounding)."""
    low, high = t.interval
    if t.quantity == "b_max":
        return pred < 1 if t.oom else pred == t.value
    return (low <= pred <= high) if low > 0 or t.value > 0 else pred < high


def _constants_dict(values: dict, dtype=jnp.float64) -> dict:
    return {k: jnp.asarray(v, dtype) for k, v in values.items()}


def predict(ref: Reference, fit: Fit, constants: dict | None = None, integer: bool = True) -> tuple[list[Target], np.ndarray]:
    """(targets, predictions) for every target ``fit`` selects, in the published units, with
    ``constants`` (others at their ``Accounting`` defaults); ``integer=False``: continuous B_max
    (the model the fit optimises). Synthetic targets for a recovery test come from here."""
    check_constants(dict(constants or {}), "constants")
    targets = [t for t in ref.targets if fit.selects(t)]
    pts = _points(ref, fit, targets)
    q = _evaluator(fit, load_hardware(ref.hardware, **ref.hardware_overrides), pts)(
        _constants_dict({**DEFAULTS, **(constants or {})}), integer
    )
    return targets, np.asarray(_predict(targets, pts, q))
