"""Every point evaluated as deployed in one vmapped call per phase, and its predicted figures.

Points are stacked (``moejax.engine.grid.stack``) per phase into leading-axis specs; the
partition has a second axis of candidate variants (searched, unpublished choices such as
``dense_tp``; padded by repeating the first), reduced on the device to the variant with the best
predicted throughput per GPU (feasible first). Decode runs ``moejax.physics.cost.decode_point``;
prefill runs ``prefill_point`` with ``batch = 0`` ("max") replaced by decode's memory-limited
B_max at the prompt length (``batch_capacity``), as prompts per pass.

Predicted figures (SI units), index order ``FIGURES``:

- ``step_time`` (s): one decode step / one prefill pass of the replica;
- ``tokens_per_s_per_user``: decode ``(1 + accepted) / step_time``; prefill ``context / step_time``
  (prompt tokens/s of one prompt);
- ``throughput_per_gpu``: decode output tokens/s per GPU (MTP tokens included); prefill prompt
  tokens/s per GPU.

A decode entry measured by an aggregated serving benchmark (a ``serving`` block with mode agg)
is predicted as the benchmark's mean step: its decode step mixed with the steps that also
prefill arriving prompts (``moejax.physics.served.prefill_mix``, the engines' default 8192-token
budget), not as an isolated step; at ``batch: max`` an offline run of ``requests`` requests (read from
its notes: ``readings``) runs at most ``min(requests, B_max)`` of them. A deployment read as running
two-batch overlap (``readings``) is evaluated with ``Accounting.overlap = 1``.

Accounting leaves may differ per point (a leading axis on each leaf), so a fit can give each
hardware family its own constants and still evaluate everything in the same call.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ...engine.grid import stack
from ...physics.cost import StepCosts, batch_capacity, decode_point, prefill_point
from ...physics.served import prefill_mix
from ...physics.specs import Accounting
from .deploy import Point
from .measurements import FIGURES

TERMS = ("t_compute", "t_hbm", "t_comm_exposed")  # candidates for the dominant term of a step


@dataclasses.dataclass(frozen=True)
class Stacked:
    """The points of one phase as kernel inputs: ``index`` into the full point list; specs with a
    leading point axis (partitions: [points, variants]); per-point host arrays for the figures."""

    phase: str
    index: np.ndarray
    models: object
    hardware: object
    partitions: object
    workloads: object
    measured: np.ndarray  # the measured figure, SI units
    figure: np.ndarray  # its position in FIGURES
    serving: np.ndarray | None  # [points, 4]: isl, osl, 1, requests for an aggregated serving benchmark; None: none is
    two_batch_overlap: np.ndarray  # [points]: 1 where the deployment runs two-batch overlap (readings), else 0


def stack_phase(points: list[Point], phase: str) -> Stacked | None:
    """The points of ``phase`` stacked for the kernel (None when there are none)."""
    index = np.array([i for i, p in enumerate(points) if p.measurement.phase == phase], dtype=int)
    if not len(index):
        return None
    sel = [points[i] for i in index]
    width = max(len(p.partitions) for p in sel)
    rows = [stack([*p.partitions, *[p.partitions[0]] * (width - len(p.partitions))]) for p in sel]
    return Stacked(
        phase=phase,
        index=index,
        models=stack([p.model for p in sel]),
        hardware=stack([p.hardware for p in sel]),
        partitions=stack(rows),
        workloads=stack([p.workload for p in sel]),
        measured=np.array([p.measurement.value for p in sel]),
        figure=np.array([FIGURES.index(p.measurement.figure) for p in sel]),
        serving=_serving_rows(sel),
        two_batch_overlap=np.array([float(p.measurement.two_batch_overlap) for p in sel]),
    )


def _serving_rows(points) -> np.ndarray | None:
    rows = np.array([agg_serving(p.measurement) for p in points], dtype=float)
    return rows if rows[:, 2].any() else None  # None: the plain decode step (no mixed steps compiled)


BUDGET = 8192.0  # tokens per step of chunked prefill: the engines' default (silicon.TOKEN_BUDGET)


def agg_serving(meas) -> tuple[float, float, float, float]:
    """(isl, osl, 1, an offline run's requests or 0) for a decode entry of an aggregated serving
    benchmark, else (1, 1, 0, 0)."""
    s = meas.serving
    on = s is not None and s["mode"] == "agg" and meas.phase == "decode"
    return (s["isl"], s["osl"], 1.0, float(meas.requests or 0)) if on else (1.0, 1.0, 0.0, 0.0)


def _served_decode(m, hw, p, wl, acc, serving) -> StepCosts:
    """The decode step, or for an aggregated serving benchmark its mean step (module docstring)."""
    isl, osl, on, requests = serving
    b_max, _ = batch_capacity(m, hw, p, wl.context, acc, wl.draft_tokens)  # resolve batch: max as decode_point does
    b_max = jnp.where(requests > 0, jnp.minimum(b_max, requests), b_max)  # an offline run never has more in flight
    wl = dataclasses.replace(wl, batch=jnp.where(wl.batch > 0, wl.batch, b_max))
    plain, mixed, share, _ = prefill_mix(m, hw, p, wl, acc, wl.batch, isl, osl, BUDGET)
    share = jnp.where(on > 0, share, 0.0)
    step = jnp.where(plain.feasible, (1 - share) * plain.step_time + share * mixed.step_time, jnp.inf)
    slow = jnp.where(plain.feasible, plain.step_time / jnp.where(plain.feasible, step, 1.0), 0.0)
    return dataclasses.replace(
        plain,
        step_time=step,
        throughput=plain.throughput * slow,
        throughput_per_gpu=plain.throughput_per_gpu * slow,
        tokens_per_s_per_user=plain.tokens_per_s_per_user * slow,
    )


def _prefill(m, hw, p, wl, acc) -> StepCosts:
    """Prefill with ``batch <= 0`` read as decode's B_max at the prompt length (prompts per pass)."""
    b_max, _ = batch_capacity(m, hw, p, wl.context, acc)
    return prefill_point(m, hw, p, dataclasses.replace(wl, batch=jnp.where(wl.batch > 0, wl.batch, b_max)), acc)


def _best_variant(costs: StepCosts) -> tuple[StepCosts, jax.Array]:
    """The variant (leading axis) with the best feasible throughput per GPU, and its index."""
    score = jnp.where(costs.feasible, costs.throughput_per_gpu, -1.0)
    i = jnp.argmax(score)
    return jax.tree_util.tree_map(lambda x: x[i], costs), i


def point_costs(phase: str, m, hw, parts, wl, acc, serving) -> tuple[StepCosts, jax.Array]:
    """One point's costs at its best variant (``parts`` has a leading variant axis)."""
    if phase == "decode" and serving is not None:
        point = lambda m, hw, p, wl, acc: _served_decode(m, hw, p, wl, acc, serving)  # noqa: E731
    elif phase == "decode":
        point = decode_point
    else:
        point = _prefill
    return _best_variant(jax.vmap(point, in_axes=(None, None, 0, None, None))(m, hw, parts, wl, acc))


def figures(costs: StepCosts) -> jax.Array:
    """[step_time, tokens_per_s_per_user, throughput_per_gpu] of one point (SI units, see module)."""
    return jnp.stack([costs.step_time, costs.tokens_per_s_per_user, costs.throughput_per_gpu])


@functools.partial(jax.jit, static_argnames="phase")
def evaluate_phase(phase: str, models, hardware, partitions, workloads, acc: Accounting, serving, two_batch_overlap):
    """All points of one phase in one vmapped call: (StepCosts, figures [n, 3], variant index).
    Every leaf of ``acc`` carries a leading point axis; ``serving`` is ``Stacked.serving`` (None
    when no point is a serving benchmark); where ``two_batch_overlap`` is 1 the point's collectives
    hide behind its compute (``Accounting.overlap = 1``, the deployment switch)."""
    acc = dataclasses.replace(acc, overlap=jnp.where(two_batch_overlap > 0, 1.0, acc.overlap))

    def one(m, hw, parts, wl, a, s):
        costs, i = point_costs(phase, m, hw, parts, wl, a, s)
        return costs, figures(costs), i

    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None if serving is None else 0))(
        models, hardware, partitions, workloads, acc, serving
    )


def per_point(acc: Accounting, n: int) -> Accounting:
    """``acc`` with every leaf broadcast to a leading axis of ``n`` points."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(jnp.asarray(x, dtype=float), (n, *jnp.shape(x))), acc)


def run_stacked(s: Stacked, acc: Accounting):
    """``evaluate_phase`` on a stacked phase; ``acc`` shared, or per point (leaves [n])."""
    n = len(s.index)
    if np.ndim(acc.hbm_efficiency) == 0:
        acc = per_point(acc, n)
    return evaluate_phase(s.phase, s.models, s.hardware, s.partitions, s.workloads, acc, s.serving, s.two_batch_overlap)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Per point (the order of ``points``): the predicted value of its measured figure (NaN if
    infeasible), all three figures [n, 3], feasibility, bound code, dominant term, the batch
    evaluated, B_max, the winning variant's label, and the StepCosts times (s)."""

    points: list
    predicted: np.ndarray
    figures: np.ndarray
    feasible: np.ndarray
    bound: np.ndarray
    dominant: list
    batch: np.ndarray
    b_max: np.ndarray
    variant: list
    times: dict

    @property
    def log_ratio(self) -> np.ndarray:
        """log(predicted / measured) per point (NaN where infeasible)."""
        measured = np.array([p.measurement.value for p in self.points])
        return np.log(self.predicted / measured)


def evaluate(points: list[Point], acc: Accounting) -> Evaluation:
    """Every point at ``acc`` (decode and prefill: one vmapped call each); ``acc`` is shared, or
    per point (every leaf with a leading axis of ``len(points)``)."""
    n = len(points)
    shared = np.ndim(acc.hbm_efficiency) == 0
    fig, feasible, bound = np.full((n, 3), np.nan), np.zeros(n, bool), np.full(n, 3)
    batch, b_max, variant = np.full(n, np.nan), np.full(n, np.nan), [""] * n
    times = {k: np.full(n, np.nan) for k in (*TERMS, "t_comm", "step_time")}
    for phase in ("decode", "prefill"):
        s = stack_phase(points, phase)
        if s is None:
            continue
        a = acc if shared else jax.tree_util.tree_map(lambda x, s=s: np.asarray(x)[s.index], acc)
        costs, f, v = jax.device_get(run_stacked(s, a))
        fig[s.index], feasible[s.index], bound[s.index] = f, costs.feasible, costs.bound
        batch[s.index], b_max[s.index] = costs.batch, costs.b_max
        for k, column in times.items():
            column[s.index] = getattr(costs, k)
        for j, i in enumerate(s.index):
            variant[i] = points[i].labels[int(v[j])]
    pick = np.array([FIGURES.index(p.measurement.figure) for p in points], dtype=int)
    predicted = np.where(feasible, fig[np.arange(n), pick] if n else np.zeros(0), np.nan)
    stacked_terms = np.stack([times[t] for t in TERMS], axis=-1) if n else np.zeros((0, 3))
    dominant = [TERMS[int(np.argmax(row))] if ok else "—" for row, ok in zip(stacked_terms, feasible)]
    return Evaluation(points, predicted, fig, feasible, bound, dominant, batch, b_max, variant, times)
