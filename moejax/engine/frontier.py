"""The serving frontier: batch as a search variable, the Pareto frontier of throughput per GPU
against tokens/s per user, and SLO selection, per grid point on the device.

Candidates of one point (model row, hardware, GPU count, context) are every partition × every
batch of ``batches`` (column 0 is each partition's own B_max, ``Workload.batch = 0``). From the
[P, K] candidate matrix the kernel keeps only small summaries, so memory stays bounded:

- per batch column, the best partition (``at_batch_*``, dimension ``batches``);
- the frontier on a fixed log-spaced interactivity axis (``frontier_*``, dimension
  ``interactivity``): at level ``u_i`` the best throughput per GPU over candidates with
  tokens/s/user ≥ ``u_i``, and the partition, batch and step time achieving it;
- with an SLO, the best candidate meeting it (``slo_*``);
- with workloads (``grid.workloads``, engine/workloads.py), every candidate served aggregated
  with chunked prefill (``physics.serving``: end-to-end tokens/s per GPU at 1/TPOT, and TTFT,
  ``*_ttft``); ``serving_*``: the highest-throughput aggregated configuration beside
  disaggregated serving; with an SLO, ``slo_disaggregated_*`` and ``slo_mode`` (which mode
  serves more per GPU under it).

The frontier is a bucket sort and a scan: each candidate falls into the bucket of the highest
level it reaches (one log and a floor, corrected against the stored levels), a segment max keeps
each bucket's best, and a reverse running max over the buckets gives every level at once. No
Python loop runs over points or candidates; winners are re-evaluated with ``decode_point``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import serving
from ..physics.cost import decode_point
from ..physics.specs import Partition, SpecError, Workload
from .grid import PARTITION_FIELDS, PartitionSpace, _argmax, cast, enumerate_partitions, lift
from .values import plain
from .variables import FLOAT, POINT, Variable, frontier_variables


@dataclasses.dataclass(frozen=True)
class FrontierSpec:
    """What the frontier kernel searches: ``batches`` (sequences per replica; B_max is always
    added as column 0), the interactivity levels (tokens/s/user, geometric) and the SLO's minimum
    tokens/s per user (0: no SLO)."""

    batches: tuple[float, ...]
    levels: tuple[float, ...]
    slo_rate: float = 0.0
    groups: tuple[tuple[int, int], ...] = ()  # slices of the grouped candidate table (grouped_table)
    ttft_max: float = 0.0  # grid.slo.ttft_max, s (0: no limit); needs workloads
    workloads: tuple[tuple[float, float, float], ...] = ()  # (decode context, isl, osl) per context (grid.workloads)
    chunk: float = 0.0  # grid.prefill_chunk: prompt tokens per decode step (<= 0: whole prompt)

    @property
    def with_slo(self) -> bool:
        return self.slo_rate > 0 or self.ttft_max > 0

    @property
    def columns(self) -> np.ndarray:
        return np.array([0.0, *self.batches])

    @property
    def n_columns(self) -> int:
        return 1 + len(self.batches)


def interactivity_levels(conf) -> np.ndarray:
    """``count`` log-spaced levels from ``min`` to ``max`` tokens/s/user (float32 values, as the
    kernel compares them). Default 1 … 1000, 10 per decade: 1, 1.259, …, 19.95, …, 1000."""
    lo, hi, n = float(conf.min), float(conf.max), int(conf.count)
    return np.geomspace(lo, hi, n).astype(np.float32).astype(np.float64)


def slo_rate(slo) -> float:
    """The SLO as one minimum tokens/s per user. TPOT (time per output token) is
    ``step_time / (1 + accepted)`` = 1/(tokens/s/user), so ``tpot_max`` ≤ T means tokens/s/user ≥ 1/T:
    both constraints bound the same quantity from below and the stricter one binds.
    ``tpot_max = 0.02`` s and ``tokens_per_s_per_user_min = 40``: 50 tokens/s/user."""
    rate = 0.0
    if slo.tokens_per_s_per_user_min is not None:
        rate = float(slo.tokens_per_s_per_user_min)
    if slo.tpot_max is not None:
        rate = max(rate, 1.0 / float(slo.tpot_max))
    return rate


def validate(grid) -> None:
    """One-line ``SpecError`` on bad batches, interactivity or SLO values."""
    batches = grid.batches
    if batches is not None:
        if isinstance(batches, str | bytes) or not hasattr(batches, "__iter__") or hasattr(batches, "keys"):
            raise SpecError(f"grid.batches = {plain(batches)!r} is invalid: a non-empty list of positive integers, e.g. [1,8,64]")
        values = list(batches)
        if not values:
            raise SpecError("grid.batches = [] is invalid: a non-empty list of positive integers (or leave it unset)")
        for b in values:
            if isinstance(b, bool) or not isinstance(b, int | float) or not np.isfinite(b) or b < 1 or int(b) != b:
                raise SpecError(f"grid.batches = {b!r} is invalid: sequences per replica, a positive integer")
        if len(set(values)) != len(values):
            raise SpecError(f"grid.batches = {values!r} is invalid: values must be unique")
    inter = grid.interactivity
    if inter is not None:
        lo, hi, n = inter.min, inter.max, inter.count
        for field, v in (("min", lo), ("max", hi)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
                raise SpecError(f"grid.interactivity.{field} = {v!r} is invalid: a positive number of tokens/s per user")
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise SpecError(f"grid.interactivity.count = {n!r} is invalid: an integer >= 2")
        if lo >= hi:
            raise SpecError(f"grid.interactivity.min = {lo!r} is invalid: must be below max = {hi!r}")
    slo = grid.slo
    if slo is not None:
        for field in ("tpot_max", "tokens_per_s_per_user_min", "ttft_max"):
            v = getattr(slo, field)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v <= 0):
                unit = "tokens/s per user" if field.startswith("tokens") else "s"
                raise SpecError(f"grid.slo.{field} = {v!r} is invalid: a positive number ({unit}) or null")
        if slo.ttft_max is not None and grid.workloads is None:
            raise SpecError(
                f"grid.slo.ttft_max = {slo.ttft_max!r} is invalid: TTFT needs prompt lengths: set grid.workloads "
                "({isl, osl} pairs) in place of grid.contexts, or drop ttft_max"
            )


def frontier_spec(grid, workloads=None) -> FrontierSpec | None:
    """The grid's frontier search, or None when it sets neither ``batches``, an SLO nor workloads
    (``workloads.grid_workloads``: decode contexts, isl, osl)."""
    batches, slo = grid.batches, grid.slo
    rate = slo_rate(slo) if slo is not None else 0.0
    ttft_max = float(slo.ttft_max) if slo is not None and slo.ttft_max is not None else 0.0
    if batches is None and rate == 0 and workloads is None:
        return None
    inter = grid.interactivity
    table = () if workloads is None else tuple(zip(*(map(float, a) for a in workloads)))
    return FrontierSpec(
        tuple(float(b) for b in (batches or [])),
        tuple(interactivity_levels(inter)),
        rate,
        ttft_max=ttft_max,
        workloads=table,
        chunk=float(grid.prefill_chunk or 0.0),
    )


def grouped_table(num_gpus: list[int], space: PartitionSpace) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Candidate tables [N, P, fields] and masks [N, P] laid out in replica-size groups: group ``g``
    (GPUs per replica ``n_g``) holds the same rows at the same static slice for every cluster size
    (the partitions of an ``n``-GPU replica do not depend on the cluster, only ``dp = N/n`` does),
    masked where ``n_g`` does not divide the cluster. Returns (table, mask, slices)."""
    f = {name: i for i, name in enumerate(PARTITION_FIELDS)}
    tables = {int(n): enumerate_partitions(int(n), space) for n in num_gpus}
    for n, t in tables.items():
        if not len(t):
            raise SpecError(f"num_gpus = {n} is invalid: no partition in the search space divides it")
    replica = {n: t[:, f["pp"]] * t[:, f["tp"]] * t[:, f["dp_attn"]] * t[:, f["kvp"]] for n, t in tables.items()}
    sizes = sorted({float(r) for rs in replica.values() for r in rs})
    canon = {size: next(t[replica[n] == size] for n, t in tables.items() if (replica[n] == size).any()) for size in sizes}
    slices, start = [], 0
    for size in sizes:
        slices.append((start, start + len(canon[size])))
        start += len(canon[size])
    table, mask = [], []
    for n, t in tables.items():
        rows, ok = [], []
        for size in sizes:
            group = t[replica[n] == size] if n % size == 0 else canon[size].copy()
            if n % size == 0 and len(group) != len(canon[size]):  # the layout's premise, checked
                raise AssertionError(f"replica size {size} has {len(group)} partitions on {n} GPUs, {len(canon[size])} elsewhere")
            rows.append(group)
            ok.append(np.full(len(group), n % size == 0))
        table.append(np.concatenate(rows))
        mask.append(np.concatenate(ok))
    return np.stack(table), np.stack(mask), tuple(slices)


def bucket(u, levels):
    """Number of ``levels`` (ascending, geometric) at or below each ``u``: the highest level a
    candidate reaches is ``levels[bucket - 1]``. A log and a floor give the bucket to rounding; one
    comparison each way with the stored levels makes it exact. 0 for u ≤ 0."""
    n = levels.shape[0]
    lo, step = jnp.log(levels[0]), jnp.log(levels[-1] / levels[0]) / (n - 1)
    guess = jnp.floor((jnp.log(jnp.maximum(u, 1e-30)) - lo) / step) + 1
    j = jnp.clip(guess, 0, n).astype(jnp.int32)
    padded = jnp.concatenate([jnp.array([-jnp.inf], u.dtype), levels, jnp.array([jnp.inf], u.dtype)])
    j = j - (u < padded[j]) + (u >= padded[j + 1])  # padded[j] = levels[j - 1]
    return jnp.where(u > 0, jnp.clip(j, 0, n), 0)


def _served(m, hw, p: Partition, context, b, acc, serve):
    """One candidate: ``decode_point`` at batch ``b`` (0: B_max), or with ``serve`` (isl, osl,
    chunk) ``serving.aggregated_point`` (steady aggregated serving with chunked prefill)."""
    if serve is None:
        return decode_point(m, hw, p, Workload(context=context, batch=b), acc)
    isl, osl, chunk = serve
    return serving.aggregated_point(m, hw, p, serving.ServingWorkload(isl=isl, osl=osl, batch=b, chunk=chunk), acc)


def _candidates(m, hw, parts: Partition, pmask, context, columns, acc, serve=None):
    """[P, K] throughput per GPU (-1 where illegal or infeasible) and tokens/s per user (0 there);
    with ``serve`` (isl, osl, chunk) these are aggregated serving's, and each candidate's TTFT
    (inf there) and pure decode throughput per GPU and tokens/s per user (what a disaggregated
    decode pool runs) follow."""

    def one(p, ok):
        def at(b):
            r = _served(m, hw, p, context, b, acc, serve)
            good = ok & r.feasible
            out = jnp.where(good, r.throughput_per_gpu, -1.0), jnp.where(good, r.tokens_per_s_per_user, 0.0)
            if serve is None:
                return out
            d = _served(m, hw, p, context, b, acc, None)  # the column's batch without the chunk's limit
            dec = ok & d.feasible
            return (
                *out,
                jnp.where(good, r.ttft, jnp.inf),
                jnp.where(dec, d.throughput_per_gpu, -1.0),
                jnp.where(dec, d.tokens_per_s_per_user, 0.0),
            )

        return jax.vmap(at)(columns)

    return jax.vmap(one)(parts, pmask)


def _winners(m, hw, parts: Partition, context, columns, acc, flat_idx, found, k: int, serve=None):
    """Re-evaluate the winning (partition, batch) candidates ``flat_idx`` (into [P·K]) exactly;
    NaN / 0 degrees where ``found`` is false. With ``serve``, aggregated serving's figures
    (``step_time`` is then the TPOT) and TTFT."""
    p_i, b_i = flat_idx // k, flat_idx % k
    winner = jax.tree_util.tree_map(lambda x: x[p_i], parts)
    r = jax.vmap(lambda p, b: _served(m, hw, p, context, b, acc, serve))(winner, columns[b_i])

    def nan(v):
        return jnp.where(found, v, jnp.nan)

    out = {
        "throughput_per_gpu": nan(r.throughput_per_gpu),
        "tokens_per_s_per_user": nan(r.tokens_per_s_per_user),
        "batch": nan(r.batch),
        "step_time": nan(r.step_time if serve is None else r.tpot),
    }
    if serve is not None:
        out["ttft"] = nan(r.ttft)
    for f in PARTITION_FIELDS:
        out[f] = jnp.where(found, getattr(winner, f), 0.0)
    return out


def _column_tops(x, u, groups):
    """Per replica-size group and explicit batch column (1 …), the candidate with the most
    tokens/s per user: (x [G, K-1], u [G, K-1], flat index [G, K-1]). Within one column and one
    group every candidate serves the same batch on the same GPUs per replica, so throughput per GPU
    = batch · tokens/s/user / GPUs is monotone in tokens/s/user and this candidate dominates the
    rest: the frontier and the SLO need only these. Groups are static slices of the table."""
    n_p, k = x.shape
    cols = jnp.arange(1, k)
    tops_x, tops_u, tops_i = [], [], []
    for start, stop in groups:
        ug = u[start:stop, 1:]
        top = ug.max(axis=0)
        arg = jnp.min(jnp.where(ug == top, jnp.arange(start, stop)[:, None], n_p - 1), axis=0)  # first holder
        tops_x.append(x[arg, cols])
        tops_u.append(top)
        tops_i.append(arg * k + cols)
    return jnp.stack(tops_x), jnp.stack(tops_u), jnp.stack(tops_i)


def _bmax_buckets(x0, u0, levels, k: int):
    """The B_max column (its batch differs per partition, so no group shortcut): each candidate
    falls into the bucket of the highest level it reaches (``bucket``), a segment max keeps each
    bucket's best (and the first candidate holding it). (x, u, flat index) per bucket [I + 1]."""
    n_p, n = x0.shape[0], levels.shape[0]
    j = bucket(u0, levels)
    best = jax.ops.segment_max(x0, j, num_segments=n + 1)
    idx = jnp.arange(n_p)
    hit = (x0 == best[j]) & (x0 > 0)
    first = jnp.clip(-jax.ops.segment_max(jnp.where(hit, -idx, -n_p), j, num_segments=n + 1), 0, n_p - 1)
    return jnp.where(best > 0, best, -1.0), jnp.where(best > 0, u0[first], 0.0), first * k


def frontier_point(
    m, hw, parts: Partition, pmask, context, columns, levels, slo_min, acc, groups, with_slo: bool, ttft_max=None, chunk=None
):
    """Per-batch best partitions, the frontier on ``levels`` and (``with_slo``) the best candidate
    with tokens/s per user ≥ ``slo_min``, for one point; see the module docstring.

    The frontier is taken over a reduced set that provably contains it: the per-(group, batch)
    tops of ``_column_tops`` and the per-bucket bests of the B_max column. At level ``u_i`` it is
    the largest throughput per GPU among them with tokens/s per user ≥ ``u_i`` (a masked argmax
    per level, a scan over the sorted levels in effect).

    With a workload (``context`` = (decode context, isl, osl)) every candidate is served aggregated
    (``serving.aggregated_point``, ``chunk`` prompt tokens per step): the frontier, the batch
    columns and the SLO rank end-to-end tokens/s per GPU at 1/TPOT, and every winner carries its
    TTFT; ``serving_*`` and, with an SLO, ``slo_disaggregated_*`` add disaggregated serving
    (``_disaggregated``) and ``slo_mode`` says which mode serves more tokens/s per GPU under the
    SLO (the cheaper per token on the same hardware). With ``ttft_max`` the SLO is a masked argmax
    over every candidate (the reduced set's dominance argument ignores TTFT)."""
    serve = None
    if isinstance(context, tuple):
        context, isl, osl = context
        serve = (isl, osl, chunk)
    x, u, *more = _candidates(m, hw, parts, pmask, context, columns, acc, serve)
    k, n_lev = x.shape[1], levels.shape[0]
    picks = []  # (prefix, flat candidate indices, found): the winners, re-evaluated in one call
    flags = {}
    parts_x, parts_u, parts_i = [], [], []
    if k > 1:
        gx, gu, gi = _column_tops(x, u, groups)
        g_best = jax.vmap(_argmax, in_axes=1)(gx)  # per column: the best group
        col = jnp.arange(k - 1)
        col_found = gx[g_best, col] > 0
        picks.append(("at_batch_", gi[g_best, col], col_found))
        flags["at_batch_feasible"] = col_found.astype(jnp.int8)
        parts_x, parts_u, parts_i = [gx.reshape(-1)], [gu.reshape(-1)], [gi.reshape(-1)]
    bx, bu, bi = _bmax_buckets(x[:, 0], u[:, 0], levels, k)
    cx, cu, ci = (jnp.concatenate([*a, b]) for a, b in ((parts_x, bx), (parts_u, bu), (parts_i, bi)))
    any_ok = jnp.max(cx) > 0  # every feasible group or bucket keeps a feasible candidate (a pass over x fewer)
    masked = jnp.where(cu[None, :] >= levels[:, None], cx[None, :], -1.0)  # [level, reduced candidate]
    w = jax.vmap(_argmax)(masked)
    reached = masked[jnp.arange(n_lev), w] > 0
    picks.append(("frontier_", ci[w], reached))
    flags["frontier_status"] = jnp.where(reached, 2, jnp.where(any_ok, 1, 0)).astype(jnp.int8)
    if with_slo and ttft_max is not None:  # every candidate: TTFT breaks the per-column dominance
        flat = jnp.where((u >= slo_min) & (more[0] <= ttft_max), x, -1.0).reshape(-1)
        i = _argmax(flat)
        picks.append(("slo_", i[None], (flat[i] > 0)[None]))
        flags["slo_status"] = jnp.where(flat[i] > 0, 2, jnp.where(any_ok, 1, 0)).astype(jnp.int8)
    elif with_slo:
        # the reduced explicit-column set, and the whole B_max column (its buckets need not align with slo_min)
        n_ex = cx.shape[0] - bx.shape[0]
        ex = jnp.where(cu[:n_ex] >= slo_min, cx[:n_ex], -1.0) if n_ex else jnp.array([-1.0], x.dtype)
        x0 = jnp.where(u[:, 0] >= slo_min, x[:, 0], -1.0)
        e, b = _argmax(ex), _argmax(x0)
        i = jnp.where(x0[b] > ex[e], b * k, ci[jnp.minimum(e, ci.shape[0] - 1)])
        met = jnp.maximum(x0[b], ex[e]) > 0
        picks.append(("slo_", i[None], met[None]))
        flags["slo_status"] = jnp.where(met, 2, jnp.where(any_ok, 1, 0)).astype(jnp.int8)
    if serve is not None:  # the frontier's highest-throughput end (the B_max end)
        top = _argmax(cx)
        picks.append(("serving_", ci[top][None], any_ok[None]))
        flags["serving_status"] = any_ok.astype(jnp.int8)
    sizes = [int(idx.shape[0]) for _, idx, _ in picks]
    every = _winners(
        m,
        hw,
        parts,
        context,
        columns,
        acc,
        jnp.concatenate([idx for _, idx, _ in picks]),
        jnp.concatenate([found for *_, found in picks]),
        k,
        serve,
    )
    out, start = {}, 0
    for (prefix, _, _), size in zip(picks, sizes):
        for name, v in every.items():
            out[prefix + name] = v[start : start + size] if prefix not in ("slo_", "serving_") else v[start]
        start += size
    out.pop("at_batch_batch", None)  # the column's own batch
    if serve is not None:
        _, x_dec, u_dec = more
        out.update(_disaggregated("serving_", m, hw, parts, pmask, x_dec, u_dec >= 0, columns, serve, acc, None))
        if with_slo:
            dis = _disaggregated("slo_", m, hw, parts, pmask, x_dec, u_dec >= slo_min, columns, serve, acc, ttft_max)
            out.update(dis)
            agg, disagg = (
                jnp.nan_to_num(out["slo_throughput_per_gpu"], nan=0.0),
                jnp.nan_to_num(dis["slo_disaggregated_throughput_per_gpu"], nan=0.0),
            )
            flags["slo_mode"] = jnp.where(jnp.maximum(agg, disagg) > 0, jnp.where(agg >= disagg, 1, 2), 0).astype(jnp.int8)
    return {**out, **flags}


def _disaggregated(prefix: str, m, hw, parts: Partition, pmask, x_dec, meets, columns, serve, acc, ttft_max) -> dict:
    """Disaggregated serving (``serving.disaggregated_point``): the decode candidate with the most
    pure decode tokens/s per GPU among those ``meets`` marks (the TPOT limit: a decode pool runs
    pure decode steps) fed by a prefill pool on the partition that serves the most prompts/s per
    GPU at its utilisation (``serving.prefill_capacity_per_gpu``: the decode replica then needs the
    fewest prefill GPUs), which ``ttft_max`` sets (None: the default). ``<prefix>disaggregated_*``
    (end-to-end tokens/s per GPU over both pools, tokens/s per user, TTFT, batch), the pool's share
    of the GPUs and both partitions; NaN (degrees 0) where nothing is feasible."""
    isl, osl, _ = serve
    k = columns.shape[0]
    flat = jnp.where(meets, x_dec, -1.0).reshape(-1)
    i = _argmax(flat)
    p_dec = jax.tree_util.tree_map(lambda v: v[i // k], parts)
    swl = serving.ServingWorkload(isl=isl, osl=osl, batch=columns[i % k])
    rate = jnp.where(pmask, jax.vmap(lambda p: serving.prefill_capacity_per_gpu(m, hw, p_dec, p, swl, acc, ttft_max))(parts), 0.0)
    j = _argmax(rate)
    p_pf = jax.tree_util.tree_map(lambda v: v[j], parts)
    d = serving.disaggregated_point(m, hw, p_dec, p_pf, swl, acc, ttft_max)
    ok = (flat[i] > 0) & (rate[j] > 0) & d.feasible
    res = {
        f"{prefix}disaggregated_throughput_per_gpu": d.throughput_per_gpu,
        f"{prefix}disaggregated_tokens_per_s_per_user": d.tokens_per_s_per_user,
        f"{prefix}disaggregated_ttft": d.ttft,
        f"{prefix}disaggregated_batch": d.batch,
        f"{prefix}prefill_share": d.prefill_share,
    }
    res = {name: jnp.where(ok, v, jnp.nan) for name, v in res.items()}
    for pool, p in (("decode", p_dec), ("prefill", p_pf)):
        res.update({f"{prefix}{pool}_{f}": jnp.where(ok, getattr(p, f), 0.0) for f in PARTITION_FIELDS})
    return res


@functools.cache
def lifted_frontier_kernel(with_slo: bool, groups: tuple, ttft_mask: bool = False):
    """``f(rows, hardware, candidates, masks, contexts, columns, levels, slo_min, acc, ttft_max, chunk)``
    over the grid axes; ``groups``: the (start, stop) slices of the grouped candidate table
    (``grouped_table``); ``contexts`` may be (decode context, isl, osl) arrays (workloads)."""

    def at(m, hw, parts, pmask, context, columns, levels, slo_min, acc, ttft_max, chunk):
        return frontier_point(
            m, hw, parts, pmask, context, columns, levels, slo_min, acc, groups, with_slo, ttft_max if ttft_mask else None, chunk
        )

    return jax.jit(lift(at))


def frontier_extra(spec: FrontierSpec, acc, dtype):
    """The ``extra`` kernel for ``grid.evaluate_chunks``: the frontier outputs of a chunk. With
    workloads each chunk's contexts are matched to their (isl, osl) on the device, so any chunking
    of the context axis works (decode contexts are unique)."""
    kernel = lifted_frontier_kernel(spec.with_slo, spec.groups, spec.ttft_max > 0)
    shared = (
        jnp.asarray(spec.columns, dtype),
        jnp.asarray(spec.levels, dtype),
        jnp.asarray(spec.slo_rate, dtype),
        cast(acc, dtype),
        jnp.asarray(spec.ttft_max, dtype),
        jnp.asarray(spec.chunk, dtype),
    )
    table = jnp.asarray(np.array(spec.workloads).reshape(-1, 3), dtype)

    def extra(rows, hardware, tables, masks, contexts):
        if spec.workloads:
            hit = (contexts[:, None] == table[None, :, 0]).astype(dtype)
            contexts = (contexts, hit @ table[:, 1], hit @ table[:, 2])
        return kernel(rows, hardware, tables, masks, contexts, *shared)

    return extra


# ---- dataset layout -------------------------------------------------------------------------


def variables(spec: FrontierSpec) -> dict[str, Variable]:
    """The registry entries (``engine.variables.Variable``) of every variable the kernel returns,
    in its order: the grid's dims, then their own (``interactivity``, ``batches``)."""
    return frontier_variables(bool(spec.workloads), bool(spec.batches), spec.slo_rate, spec.ttft_max)


def coords(spec: FrontierSpec) -> dict:
    out = {"interactivity": (np.asarray(spec.levels), {"units": "s-1", "long_name": "output tokens per second per user (level)"})}
    if spec.batches:
        out["batches"] = (np.asarray(spec.batches), {"units": "1", "long_name": "requested sequences per replica (grid.batches)"})
    return out


def missing_value(name: str, spec: FrontierSpec):
    """What a variable holds where its dense baseline does not exist: 0 (infeasible) for flags,
    0 for partition degrees, NaN for numbers."""
    return np.nan if variables(spec)[name].dtype == FLOAT else 0


@dataclasses.dataclass(frozen=True)
class SweepHooks:
    """What a sweep run needs for the frontier: the extra kernel, the chunk budget in partitions
    (a chunk's candidates are partitions × batch columns), part dims and dataset variables
    (registry entries)."""

    extra: object = None
    max_evaluations: int = 0
    trailing: dict = dataclasses.field(default_factory=dict)
    dims: dict = dataclasses.field(default_factory=dict)
    variables: tuple = ()


def sweep_hooks(spec: FrontierSpec | None, acc, dtype, max_evaluations: int, float_dtype: str) -> SweepHooks:
    """The run's hooks; without a frontier, none (and the chunk budget unchanged)."""
    if spec is None:
        return SweepHooks(max_evaluations=max_evaluations)
    names = variables(spec)
    return SweepHooks(
        frontier_extra(spec, acc, dtype),
        max(1, max_evaluations // spec.n_columns),
        {name: var.dims[len(POINT) :] for name, var in names.items() if len(var.dims) > len(POINT)},
        coords(spec),
        tuple(names.values()),
    )
