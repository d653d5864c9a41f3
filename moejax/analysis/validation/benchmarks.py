"""Measured serving benchmarks (``ServingRow``) resolved into kernel inputs and predicted in one
vmapped pass per mode (``moejax.physics.served``): TPOT and TTFT per row, residuals
``log(predicted / measured)`` on both, and the statistics by group.

A row whose deployment the catalogue cannot express (no model, no partition of that model) is kept
with its reason; a row that does not fit in memory is evaluated and reported as infeasible. Nothing
is dropped. Accounting leaves may carry a leading row axis (a fit gives groups their own constants).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np

from ...catalogue import available, load_accounting, load_hardware, load_model
from ...engine.grid import stack
from ...physics.partition import check_partition
from ...physics.served import Benchmark, aggregated, disaggregated
from ...physics.specs import Accounting, ModelSpec, Partition, SpecError
from .evaluate import per_point
from .report import abs_log_stats
from .silicon import Pool, ServingRow

GROUPS = ("backend", "system", "model", "mode")
PREDICTED = ("tpot", "ttft", "throughput_per_gpu", "tokens_per_s_per_user", "batch")


@dataclasses.dataclass(frozen=True)
class Case:
    """One expressible row as kernel inputs."""

    row: ServingRow
    model: ModelSpec
    hardware: object
    decode: Partition
    prefill: Partition
    bench: Benchmark


def partition(m: ModelSpec, pool: Pool) -> Partition:
    """A pool's parallelism as a ``Partition``: attention ``tp x dp_attn`` per stage, experts
    ``moe_tp x moe_ep`` over the same GPUs (moejax's expert TP is ``tp·dp_attn/ep``; a dense model's
    MoE columns are not read), dense layers and LM head over the whole stage (``dense_tp = 0``), and
    the fewest redundant expert slots that let ``ep`` divide the experts. ``SpecError`` when the
    model cannot be split so."""
    experts = float(m.n_experts)
    ep = pool.moe_ep if experts > 1 else 1
    if experts > 1 and pool.tp * pool.dp_attn != pool.moe_tp * pool.moe_ep:
        raise SpecError(
            f"moe_tp x moe_ep = {pool.moe_tp * pool.moe_ep} differs from tp x attention_dp = "
            f"{pool.tp * pool.dp_attn} (the experts must span the attention GPUs)"
        )
    redundant = (-experts) % ep if ep > 1 else 0.0
    p = Partition(
        tp=float(pool.tp),
        ep=float(ep),
        pp=float(pool.pp),
        dp_attn=float(pool.dp_attn),
        redundant_experts=float(redundant),
    )
    check_partition(m, p)
    return p


@functools.lru_cache(maxsize=None)
def _model(name: str, dtypes: tuple) -> ModelSpec:
    return load_model(name, **dict(dtypes))  # thousands of rows share a few models: read each entry once


@functools.lru_cache(maxsize=None)
def _hardware(name: str):
    return load_hardware(name)


def resolve(row: ServingRow) -> Case | str:
    """The row as kernel inputs, or the one-line reason it is not expressible."""
    if row.unexpressible:
        return row.unexpressible
    if row.hardware not in available("hardware"):
        return f"hardware {row.hardware!r} is not in the catalogue (conf/hardware/)"
    m = _model(row.model, tuple(sorted(row.dtypes.items())))
    try:
        dec = partition(m, row.decode)
        pf = partition(m, row.prefill) if row.prefill is not None else dec
    except SpecError as e:
        return f"partition not expressible for {row.model}: {e}"
    disagg = row.prefill is not None
    bench = Benchmark(
        isl=row.isl,
        osl=row.osl,
        concurrency=float(row.concurrency),
        decode_workers=float(row.decode.workers),
        prefill_workers=float(row.prefill.workers if disagg else 0),
        decode_cap=float(row.decode.cap),
        prefill_cap=float(row.prefill.cap if disagg else 0),
        token_budget=row.token_budget,
        draft_tokens=row.draft_tokens,
        accepted=row.accepted,
        prefill_first=row.prefill_first,
    )
    return Case(row, m, _hardware(row.hardware), dec, pf, bench)


def measurement_cases(points, variants: list[str]) -> tuple[list[int], list[Case]]:
    """The decode entries of a measurement YAML with an aggregated ``serving`` block as benchmarks
    (their TTFT is predicted this way): (point indices, cases). ``variants`` are the evaluation's
    chosen variant labels. The running batch is ``batch`` (its engine cap too) or, for ``batch:
    max``, the memory limit; the concurrency is the block's, else an offline run's requests, else the batch."""
    index, cases = [], []
    for i, p in enumerate(points):
        meas, s = p.measurement, p.measurement.serving
        if s is None or s["mode"] != "agg" or meas.phase != "decode":
            continue
        batch = meas.batch if isinstance(meas.batch, int) else 0
        concurrency = s["concurrency"] or meas.requests or batch or 1e6
        mtp = meas.mtp or {"draft_tokens": 0.0, "accepted": 0.0}
        part = p.partitions[p.labels.index(variants[i])] if variants[i] in p.labels else p.partitions[0]
        bench = Benchmark(
            isl=s["isl"],
            osl=s["osl"],
            concurrency=float(concurrency),
            decode_cap=float(batch),
            draft_tokens=float(mtp["draft_tokens"]),
            accepted=float(mtp["accepted"]),
        )
        row = ServingRow(
            id=meas.id,
            backend="unknown",
            model_path=meas.model,
            model=meas.model,
            hardware=meas.hardware,
            mode="agg",
            isl=s["isl"],
            osl=s["osl"],
            concurrency=int(concurrency),
            dtypes=meas.dtypes,
            decode=None,
            prefill=None,
            token_budget=bench.token_budget,
            ttft=s["ttft"] or math.nan,
            tpot=math.nan,
        )
        index.append(i)
        cases.append(Case(row, p.model, p.hardware, part, part, bench))
    return index, cases


def resolve_all(rows: list[ServingRow]) -> tuple[list[Case], dict[str, str]]:
    """(cases, not_expressible {id: reason}) in file order."""
    cases, reasons = [], {}
    for row in rows:
        r = resolve(row)
        if isinstance(r, str):
            reasons[row.id] = r
        else:
            cases.append(r)
    return cases, reasons


def _one(mode: str, m, hw, p_dec, p_pf, bench, acc):
    out = aggregated(m, hw, p_dec, bench, acc) if mode == "agg" else disaggregated(m, hw, p_dec, p_pf, bench, acc)
    return {
        "tpot": out.tpot,
        "ttft": out.ttft,
        "throughput_per_gpu": out.throughput_per_gpu,
        "tokens_per_s_per_user": out.tokens_per_s_per_user,
        "batch": out.batch,
        "feasible": out.feasible,
        "queue_wait": out.queue_wait,
        "admission_wait": out.admission_wait,
        "t_prefill": out.t_prefill,
    }


@functools.partial(jax.jit, static_argnames="mode")
def predict_mode(mode: str, models, hardware, decode, prefill, benches, acc: Accounting) -> dict:
    """Every row of one mode in one vmapped call; ``acc`` leaves carry a leading row axis."""
    return jax.vmap(functools.partial(_one, mode))(models, hardware, decode, prefill, benches, acc)


@dataclasses.dataclass(frozen=True)
class Stacked:
    mode: str
    index: np.ndarray
    inputs: tuple
    measured: np.ndarray  # [n, 2]: tpot, ttft (s)


def stack_modes(cases: list[Case]) -> list[Stacked]:
    """The cases of each mode stacked as kernel inputs (modes without cases left out)."""
    out = []
    for mode in ("agg", "disagg"):
        index = np.array([i for i, c in enumerate(cases) if c.row.mode == mode], dtype=int)
        if not len(index):
            continue
        sel = [cases[i] for i in index]
        inputs = tuple(stack([getattr(c, f) for c in sel]) for f in ("model", "hardware", "decode", "prefill", "bench"))
        out.append(Stacked(mode, index, inputs, np.array([[c.row.tpot, c.row.ttft] for c in sel])))
    return out


def predict(cases: list[Case], acc: Accounting, stacks: list[Stacked] | None = None) -> dict[str, np.ndarray]:
    """Every case's predicted figures (``PREDICTED`` plus ``feasible`` and the TTFT parts), in case
    order; ``acc`` shared or with leaves of a leading ``len(cases)`` axis."""
    n = len(cases)
    shared = np.ndim(acc.hbm_efficiency) == 0
    out = {k: np.full(n, np.nan) for k in (*PREDICTED, "queue_wait", "admission_wait", "t_prefill")}
    out["feasible"] = np.zeros(n, bool)
    for s in stacks if stacks is not None else stack_modes(cases):
        a = per_point(acc, len(s.index)) if shared else jax.tree_util.tree_map(lambda x, s=s: np.asarray(x)[s.index], acc)
        res = jax.device_get(predict_mode(s.mode, *s.inputs, a))
        for k, v in res.items():
            out[k][s.index] = v
    for k in ("tpot", "ttft"):
        out[k] = np.where(out["feasible"], out[k], np.nan)
    return out


def row_accounting(name: str, cases: list[Case]) -> Accounting:
    """The accounting preset ``name`` per row (leaves [n]), each row with its backend's engine
    profile where the preset has one (``load_accounting(profile=)``), else the preset itself."""
    by_backend = {}
    for b in sorted({c.row.backend for c in cases}):
        try:
            by_backend[b] = load_accounting(name, profile=b)
        except SpecError:
            by_backend[b] = load_accounting(name)
    return stack([by_backend[c.row.backend] for c in cases])


def residuals(cases: list[Case], pred: dict) -> np.ndarray:
    """[n, 2] log(predicted / measured) for TPOT and TTFT (NaN where infeasible)."""
    measured = np.array([[c.row.tpot, c.row.ttft] for c in cases]).reshape(-1, 2)
    return np.log(np.stack([pred["tpot"], pred["ttft"]], axis=-1) / measured)


def group_table(cases: list[Case], log_ratio: np.ndarray) -> list[dict]:
    """Median and p90 |log ratio| of TPOT and TTFT: overall, then per value of each of ``GROUPS``."""
    table = []
    labels = {g: np.array([c.row.groups[g] for c in cases]) for g in GROUPS}
    for group, value, mask in [("all", "all", np.ones(len(cases), bool))] + [
        (g, v, labels[g] == v) for g in GROUPS for v in sorted(set(labels[g]))
    ]:
        t, f = abs_log_stats(log_ratio[mask, 0]), abs_log_stats(log_ratio[mask, 1])
        table.append(
            {
                "group": group,
                "value": str(value),
                "n": int(mask.sum()),
                "infeasible": int(np.sum(mask & ~np.isfinite(log_ratio[:, 0]))),
                "tpot_median": t[0],
                "tpot_p90": t[1],
                "ttft_median": f[0],
                "ttft_p90": f[1],
            }
        )
    return table
