"""One point, explained: every candidate partition × a batch list for one (model, hardware, GPU
count, context), in one vmapped call per phase; the best configuration and its breakdown, the top
partitions, a throughput-vs-interactivity frontier, TTFT (chunked vs disaggregated) and economics.
The command is ``python -m moejax.point``; this module returns plain host arrays and numbers."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..catalogue import hardware_economics, load_hardware, load_model
from ..engine.grid import (
    PARTITION_FIELDS,
    PartitionSpace,
    all_partitions_point,
    enumerate_partitions,
    legal_masks,
    stack,
)
from ..physics import serving
from ..physics.cost import BOUND_MEANINGS, decode_phases
from ..physics.phases import phase_times
from ..physics.specs import Accounting, HardwareSpec, Partition, SpecError, Workload, replace


def what_if_fields() -> tuple[str, ...]:
    """The fields ``what_if`` may scale, read from the specs: every HardwareSpec quantity with units
    (not the counts, units ``1``: fabric kind, island size, torus dimensions) and every Accounting
    constant (not its static switches). A field added to either spec is scalable with nothing else
    to edit (the point command's Hydra schema is built from this list).

    >>> fields = what_if_fields()
    >>> fields[:3], "island_size" in fields, "tau_gemm" in fields, "mode" in fields
    (('hbm_bytes', 'hbm_bw', 'flops_bf16'), False, True, False)
    """
    hardware = [f.name for f in dataclasses.fields(HardwareSpec) if f.metadata.get("units") != "1"]
    accounting = [f.name for f in dataclasses.fields(Accounting) if not f.metadata.get("static")]
    return (*hardware, *accounting)


WHAT_IF_FIELDS = what_if_fields()


@dataclasses.dataclass(frozen=True)
class PointQuery:
    """What to explain. ``context`` tokens, or ``isl``/``osl`` (then context = isl + osl/2 and TTFT
    is computed); ``batch`` sequences per replica (0: B_max); ``batches`` the batches the frontier
    searches (with ``batch``); ``levels`` its interactivity levels, tokens/s per user."""

    model: str
    hardware: str
    num_gpus: int
    accounting: Accounting
    context: float | None = None
    isl: float | None = None
    osl: float | None = None
    batch: float = 0.0
    batches: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    levels: tuple[float, ...] = (5, 10, 20, 50, 100, 200, 500, 1000)
    top: int = 5
    chunk: float = 0.0
    dtypes: dict = dataclasses.field(default_factory=dict)
    space: PartitionSpace = PartitionSpace()
    price_per_gpu_hour: float | None = None
    board_power: float | None = None
    what_if: dict = dataclasses.field(default_factory=dict)  # field -> factor (> 0) on the hardware or accounting
    tpot_max: float | None = None  # SLO, s per output token after the first (needs isl/osl)
    ttft_max: float | None = None  # SLO, s to the first token (needs isl/osl)

    def __post_init__(self):
        if not (isinstance(self.num_gpus, int) and not isinstance(self.num_gpus, bool) and self.num_gpus >= 1):
            raise SpecError(f"num_gpus = {self.num_gpus!r} is invalid: a positive integer")
        given = self.context is not None, self.isl is not None, self.osl is not None
        if given[0] and (given[1] or given[2]):
            raise SpecError(
                f"context = {self.context!r} is invalid with isl/osl: give context, or isl and osl (context = isl + osl/2)"
            )
        if not given[0] and not (given[1] and given[2]):
            missing = "context" if not any(given) else ("osl" if given[1] else "isl")
            raise SpecError(f"{missing} is missing: give context=TOKENS, or isl=TOKENS and osl=TOKENS")
        for name in ("context", "isl", "osl"):
            _positive(name, getattr(self, name), optional=True, least=1.0)
        _positive("batch", self.batch, least=0.0)
        if not self.batches:
            raise SpecError("batches = [] is invalid: a non-empty list of positive numbers")
        for b in self.batches:
            _positive("batches", b, least=1.0)
        if not self.levels:
            raise SpecError("levels = [] is invalid: a non-empty list of positive numbers")
        for lv in self.levels:
            _positive("levels", lv, least=0.0)
            if lv == 0:
                raise SpecError("levels = 0 is invalid: tokens/s per user > 0")
        if not (isinstance(self.top, int) and self.top >= 1):
            raise SpecError(f"top = {self.top!r} is invalid: a positive integer")
        _positive("chunk", self.chunk, least=0.0)
        for field in ("tpot_max", "ttft_max"):
            value = getattr(self, field)
            _positive(f"slo.{field}", value, optional=True)
            if value is not None and value <= 0:
                raise SpecError(f"slo.{field} = {value!r} is invalid: a positive number of seconds, or null")
            if value is not None and self.isl is None:
                raise SpecError(f"slo.{field} = {value!r} is invalid without a workload: give isl= and osl= (not context=)")
        for field, factor in self.what_if.items():
            if field not in WHAT_IF_FIELDS:
                raise SpecError(f"what_if.{field} is not a known field: allowed {', '.join(WHAT_IF_FIELDS)}")
            ok = isinstance(factor, int | float) and not isinstance(factor, bool) and np.isfinite(factor) and factor > 0
            if not ok:
                raise SpecError(
                    f"what_if.{field} = {factor!r} is invalid: a factor > 0 (allowed fields {', '.join(WHAT_IF_FIELDS)})"
                )

    @property
    def decode_context(self) -> float:
        return float(self.context) if self.context is not None else float(serving.decode_context(self.isl, self.osl))


def _positive(name, value, optional=False, least=0.0):
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value) and value >= least
    if not ok:
        raise SpecError(f"{name} = {value!r} is invalid: a number >= {least:g}")


@functools.cache
def _decode_kernel():
    """Every candidate at every batch: ``all_partitions_point`` vmapped over the batch list."""

    def at(m, hw, parts, mask, context, batch, acc):
        return all_partitions_point(m, hw, parts, mask, Workload(context=context, batch=batch), acc)[0]

    return jax.jit(jax.vmap(at, in_axes=(None, None, None, None, None, 0, None)))


@functools.cache
def _serving_kernels():
    """Aggregated serving on every candidate; disaggregated with one decode partition and every
    candidate as the prefill partition."""
    agg = jax.jit(jax.vmap(serving.aggregated_point, in_axes=(None, None, 0, None, None)))
    dis = jax.jit(jax.vmap(serving.disaggregated_point, in_axes=(None, None, None, 0, None, None)))
    return agg, dis


def _host(tree) -> dict:
    return {k: np.asarray(v) for k, v in vars(tree).items() if not dataclasses.is_dataclass(v)}


def _pick(table: np.ndarray, i: int) -> Partition:
    return Partition(**{f: float(table[i, j]) for j, f in enumerate(PARTITION_FIELDS)})


def partition_label(row) -> str:
    """``TP8·EP8·PP1·DPattn1·KVP1·dense_tp8 ×1`` style label of a candidate row."""
    r = dict(zip(PARTITION_FIELDS, (int(x) for x in row)))
    kv = {0: "", 1: "kvp", 2: "cp"}[r["kv_mode"]]
    parts = [f"TP{r['tp']}", f"EP{r['ep']}", f"PP{r['pp']}", f"DPattn{r['dp_attn']}"]
    if r["kvp"] > 1:
        parts.append(f"{kv.upper()}{r['kvp']}")
    parts.append(f"dTP{r['dense_tp'] or r['tp'] * r['dp_attn'] * r['kvp']}")
    if r["redundant_experts"]:
        parts.append(f"R{r['redundant_experts']}")
    return "·".join(parts) + f" ×{r['dp']}"


def explain(q: PointQuery) -> dict:
    """Evaluate the point: returns ``best`` (breakdown of the best partition at ``q.batch``), ``top``
    (rows), ``frontier`` (rows per interactivity level), ``economics`` and, with isl/osl,
    ``serving`` (aggregated and disaggregated)."""
    m = load_model(q.model, **q.dtypes)
    hw, acc = scaled(load_hardware(q.hardware), q.accounting, q.what_if)
    econ = hardware_economics(q.hardware, price_per_gpu_hour=q.price_per_gpu_hour, board_power=q.board_power)
    table = enumerate_partitions(q.num_gpus, q.space)
    if not len(table):
        raise SpecError(f"num_gpus = {q.num_gpus} is invalid: no partition in the search space divides it")
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    parts = Partition(**{f: jnp.asarray(table[:, i], dtype) for i, f in enumerate(PARTITION_FIELDS)})
    legal = np.asarray(
        legal_masks(stack([m]), jax.tree_util.tree_map(lambda x: x[None], parts), jnp.ones((1, len(table)), bool))
    )[0, 0]
    if not legal.any():
        raise SpecError(f"num_gpus = {q.num_gpus} is invalid: no candidate partition splits {q.model} (heads, experts, layers)")
    context = q.decode_context
    batches = np.array([float(q.batch), *map(float, q.batches)])
    out = _host(_decode_kernel()(m, hw, parts, jnp.asarray(legal), jnp.asarray(context, dtype), jnp.asarray(batches, dtype), acc))
    tput = np.where(out["feasible"], out["throughput_per_gpu"], -1.0)  # [batch, partition]

    head = tput[0]
    result = {
        "model": q.model,
        "hardware": q.hardware,
        "num_gpus": q.num_gpus,
        "context": context,
        "economics": econ,
        "candidates": int(legal.sum()),
        "feasible": int((head > 0).sum()),
    }
    if head.max() <= 0:
        result.update(best=None, top=[], frontier=_frontier(out, tput, table, np.asarray(q.levels, float)), serving=None)
        return result
    order = np.argsort(-head, kind="stable")[: q.top]
    i = int(order[0])
    best = {k: float(v[0, i]) for k, v in out.items()}
    best["partition"] = partition_label(table[i])
    best["degrees"] = dict(zip(PARTITION_FIELDS, (int(x) for x in table[i])))
    best["free_bytes"] = float(hw.hbm_bytes) - best["memory_per_gpu"]
    best["reserve_bytes"] = float(acc.reserve_bytes)
    best["bound_name"] = BOUND_MEANINGS[int(best["bound"])]
    best["phases"] = step_by_phase(m, hw, _pick(table, i), Workload(context=context, batch=best["batch"]), acc)
    best["cost_per_mtok"] = float(serving.cost_per_mtok(econ.price_per_gpu_hour, best["throughput_per_gpu"]))
    best["joules_per_token"] = float(serving.joules_per_token(econ.board_power, best["throughput_per_gpu"]))
    result["best"] = best
    result["top"] = [_row(out, 0, int(j), table) for j in order if head[j] > 0]
    result["frontier"] = [
        f
        | {
            "cost_per_mtok": float(serving.cost_per_mtok(econ.price_per_gpu_hour, f["throughput_per_gpu"])),
            "joules_per_token": float(serving.joules_per_token(econ.board_power, f["throughput_per_gpu"])),
        }
        for f in _frontier(out, tput, table, np.asarray(q.levels, float))
    ]
    result["serving"] = _serving(m, hw, parts, table, legal, q, acc, econ, dtype, head) if q.isl is not None else None
    with_slo = q.tpot_max is not None or q.ttft_max is not None
    result["slo"] = _slo_choice(m, hw, parts, table, legal, q, acc, econ, dtype, out, batches) if with_slo else None
    return result


def step_by_phase(m, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting) -> dict[str, float]:
    """Seconds of one step taken by each phase the model has (``decode_phases``, ``phase_times``:
    its layers' ``max(compute, HBM)`` windows plus their exposed communication), in step order."""
    step = decode_phases(m, hw, p, wl, acc)
    return {name: float(t.time) for name, t in phase_times(step.phases, p.pp, acc).items() if float(t.layers) > 0}


def _row(out: dict, b: int, j: int, table: np.ndarray) -> dict:
    return {
        "partition": partition_label(table[j]),
        "throughput_per_gpu": float(out["throughput_per_gpu"][b, j]),
        "tokens_per_s_per_user": float(out["tokens_per_s_per_user"][b, j]),
        "batch": float(out["batch"][b, j]),
        "bound": BOUND_MEANINGS[int(out["bound"][b, j])],
    }


def _frontier(out: dict, tput: np.ndarray, table: np.ndarray, levels: np.ndarray) -> list[dict]:
    """For each interactivity level (tokens/s per user), the most tokens/s per GPU of any candidate
    (partition × batch, B_max included) at that interactivity or more, with its configuration:
    the Pareto frontier of (tokens/s per user, tokens/s per GPU) read at fixed levels. Levels no
    candidate reaches are left out. One masked argmax over all candidates, no loop."""
    per_user, per_gpu = out["tokens_per_s_per_user"].ravel(), tput.ravel()
    reach = (per_user[None, :] >= levels[:, None]) & (per_gpu[None, :] > 0)  # [level, candidate]
    best = np.argmax(np.where(reach, per_gpu[None, :], -1.0), axis=1)
    n_parts = tput.shape[1]
    return [
        _row(out, int(k) // n_parts, int(k) % n_parts, table) | {"level": float(lv)}
        for lv, k, ok in zip(levels, best, reach.any(axis=1))
        if ok
    ]


def scaled(hw: HardwareSpec, acc: Accounting, what_if: dict) -> tuple[HardwareSpec, Accounting]:
    """``hw`` and ``acc`` with each field of ``what_if`` multiplied by its factor (``dataclasses.replace``,
    so the specs re-validate: a fraction scaled above 1 is a one-line ``SpecError``)."""
    hw_fields = {f.name for f in dataclasses.fields(HardwareSpec)}
    hw = replace(hw, **{f: float(getattr(hw, f)) * k for f, k in what_if.items() if f in hw_fields})
    acc = replace(acc, **{f: float(getattr(acc, f)) * k for f, k in what_if.items() if f not in hw_fields})
    return hw, acc


def _serving(m, hw, parts, table, legal, q: PointQuery, acc, econ, dtype, decode_score) -> dict:
    """Aggregated: the partition with the most end-to-end tokens/s per GPU, and the one with the
    shortest TTFT. Disaggregated: the best decode partition (``decode_score``: tokens/s per GPU
    at ``q.batch``) with the prefill partition of the most end-to-end tokens/s per GPU (the most
    prompts/s per GPU: the rate increases in it, ``physics.serving``), and with the one of the
    shortest TTFT."""
    agg_k, dis_k = _serving_kernels()
    swl = serving.ServingWorkload(
        isl=jnp.asarray(q.isl, dtype),
        osl=jnp.asarray(q.osl, dtype),
        batch=jnp.asarray(q.batch, dtype),
        chunk=jnp.asarray(q.chunk, dtype),
    )
    result = {}
    agg = _host(agg_k(m, hw, parts, swl, acc))
    ok = legal & agg["feasible"].astype(bool)
    if ok.any():
        result["aggregated"] = _serving_row(agg, int(np.argmax(np.where(ok, agg["throughput_per_gpu"], -1.0))), table, econ)
        result["aggregated, min TTFT"] = _serving_row(agg, int(np.argmin(np.where(ok, agg["ttft"], np.inf))), table, econ)
    if decode_score.max() > 0:
        i = int(np.argmax(decode_score))
        dis = _host(dis_k(m, hw, _pick(table, i), parts, swl, acc))
        ok = legal & dis["feasible"].astype(bool)
        if ok.any():
            for name, j in (
                ("disaggregated", int(np.argmax(np.where(ok, dis["throughput_per_gpu"], -1.0)))),
                ("disaggregated, min TTFT", int(np.argmin(np.where(ok, dis["ttft"], np.inf)))),
            ):
                result[name] = _serving_row(dis, j, table, econ, decode=i) | {
                    "prefill_partition": partition_label(table[j]),
                    "prefill_degrees": dict(zip(PARTITION_FIELDS, (int(x) for x in table[j]))),
                }
    return result


def _serving_row(r: dict, i: int, table, econ, decode: int | None = None) -> dict:
    """Row ``i`` of a serving result; ``decode``: the decode partition when ``i`` indexes prefill partitions."""
    tps = float(r["throughput_per_gpu"][i])
    row = table[i if decode is None else decode]
    return {
        "partition": partition_label(row),
        "degrees": dict(zip(PARTITION_FIELDS, (int(x) for x in row))),
        "ttft": float(r["ttft"][i]),
        "tpot": float(r["tpot"][i]),
        "batch": float(r["batch"][i]),
        "throughput_per_gpu": tps,
        "tokens_per_s_per_user": float(r["tokens_per_s_per_user"][i]),
        "prefill_share": float(r["prefill_share"][i]),
        "prefill_time": float(r["prefill_time"][i]),
        "kv_transfer_time": float(r["kv_transfer_time"][i]),
        "cost_per_mtok": float(serving.cost_per_mtok(econ.price_per_gpu_hour, tps)),
        "joules_per_token": float(serving.joules_per_token(econ.board_power, tps)),
    }


@functools.cache
def _slo_kernels():
    """Aggregated serving on every (batch, partition); the prefill capacity per GPU of every
    partition for one decode partition; one disaggregated configuration."""

    def agg_at(m, hw, p, b, isl, osl, chunk, acc):
        return serving.aggregated_point(m, hw, p, serving.ServingWorkload(isl=isl, osl=osl, batch=b, chunk=chunk), acc)

    agg = jax.jit(
        jax.vmap(
            jax.vmap(agg_at, in_axes=(None, None, 0, None, None, None, None, None)),
            in_axes=(None, None, None, 0, None, None, None, None),
        )
    )
    cap = jax.jit(jax.vmap(serving.prefill_capacity_per_gpu, in_axes=(None, None, None, 0, None, None, None)))
    return agg, cap, jax.jit(serving.disaggregated_point)


def _slo_choice(m, hw, parts, table, legal, q: PointQuery, acc, econ, dtype, decode: dict, decode_batches) -> dict:
    """Under the SLO (``q.tpot_max``, ``q.ttft_max``), each mode's cheapest configuration over
    partitions × batches (B_max and ``q.batches``), and which is cheaper per token on this hardware.
    Aggregated: the most end-to-end tokens/s per GPU among candidates meeting both limits.
    Disaggregated: the decode candidate (``decode``: the pure decode steps at ``decode_batches``)
    with the most tokens/s per GPU meeting the TPOT limit, fed by the prefill partition serving the
    most prompts/s per GPU at the utilisation the TTFT limit allows (``serving.prefill_capacity_per_gpu``)."""
    agg_k, cap_k, dis_k = _slo_kernels()
    isl, osl, chunk = (jnp.asarray(v, dtype) for v in (q.isl, q.osl, q.chunk))
    tpot_max = np.inf if q.tpot_max is None else q.tpot_max
    batches = np.array([0.0, *map(float, q.batches)])
    agg = _host(agg_k(m, hw, parts, jnp.asarray(batches, dtype), isl, osl, chunk, acc))  # [batch, partition]
    ok = legal[None, :] & agg["feasible"].astype(bool) & (agg["tpot"] <= tpot_max)
    if q.ttft_max is not None:
        ok &= agg["ttft"] <= q.ttft_max
    result = {"aggregated": None, "disaggregated": None}
    if ok.any():
        k, j = np.unravel_index(int(np.argmax(np.where(ok, agg["throughput_per_gpu"], -1.0))), ok.shape)
        result["aggregated"] = _serving_row({name: v[k] for name, v in agg.items()}, int(j), table, econ)
    fast = (
        legal[None, :] & decode["feasible"].astype(bool) & (1.0 / np.maximum(decode["tokens_per_s_per_user"], 1e-30) <= tpot_max)
    )
    if fast.any():
        k, i = np.unravel_index(int(np.argmax(np.where(fast, decode["throughput_per_gpu"], -1.0))), fast.shape)
        p_dec = _pick(table, int(i))
        swl = serving.ServingWorkload(isl=isl, osl=osl, batch=jnp.asarray(decode_batches[k], dtype))
        ttft_max = None if q.ttft_max is None else jnp.asarray(q.ttft_max, dtype)
        cap = np.where(legal, np.asarray(cap_k(m, hw, p_dec, parts, swl, acc, ttft_max)), 0.0)
        j = int(np.argmax(cap))
        d = _host(dis_k(m, hw, p_dec, _pick(table, j), swl, acc, ttft_max))
        if cap[j] > 0 and bool(d["feasible"]):
            result["disaggregated"] = _serving_row({name: v[None] for name, v in d.items()}, 0, table, econ, decode=int(i)) | {
                "prefill_partition": partition_label(table[j]),
                "prefill_degrees": dict(zip(PARTITION_FIELDS, (int(x) for x in table[j]))),
            }
    met = {mode: row["cost_per_mtok"] for mode, row in result.items() if row is not None}
    result["cheaper"] = min(met, key=met.get) if met else None
    return result
