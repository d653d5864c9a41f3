"""Grids: partition candidates, the one-point kernel lifted over grid axes, chunked evaluation.

Axes of the lifted kernel, outermost first: ``row`` (a model variant: an MoE or one of its dense
baselines), ``hardware``, ``num_gpus`` (each with its own padded table of candidate partitions),
``context``. The partition axis is innermost: it is either reduced on the device (best feasible
partition by throughput per GPU) or kept. Nested ``vmap`` keeps per-axis work (parameter counts,
resident weights) at that axis's size instead of broadcasting it to every point.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..physics.cost import StepCosts, decode_point
from ..physics.partition import partition_valid
from ..physics.specs import KV_MODES, Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload

PARTITION_FIELDS = tuple(f.name for f in dataclasses.fields(Partition))


def elasticity_fields(spec=HardwareSpec) -> tuple[str, ...]:
    """The hardware fields the sensitivities differentiate, in their metadata order (``elasticity``)."""
    elastic = [f for f in dataclasses.fields(spec) if f.metadata.get("elasticity") is not None]
    return tuple(f.name for f in sorted(elastic, key=lambda f: f.metadata["elasticity"]))


ELASTICITY_FIELDS = elasticity_fields()
AXES = ("row", "hardware", "num_gpus", "context")


@dataclasses.dataclass(frozen=True)
class PartitionSpace:
    """Degrees the search may use; every combination whose GPU count divides the cluster is a
    candidate (the remaining factor becomes data-parallel replicas ``dp``)."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    ep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    pp: tuple[int, ...] = (1, 2, 4)
    dp_attn: tuple[int, ...] = (1, 2, 4, 8)
    kvp: tuple[int, ...] = (1, 2, 4, 8)
    kv_modes: tuple[str, ...] = ("kvp", "cp")
    dense_tp: tuple[int, ...] = (1, 2, 4, 8)
    redundant_experts: tuple[int, ...] = (0,)

    def __post_init__(self):
        for name in ("tp", "ep", "pp", "dp_attn", "kvp", "dense_tp"):
            values = getattr(self, name)
            if not values or any(int(v) != v or v < 1 for v in values):
                raise SpecError(f"partitions.{name} = {list(values)!r} is invalid: a non-empty list of positive integers")
        if not self.redundant_experts or any(int(v) != v or v < 0 for v in self.redundant_experts):
            raise SpecError(
                f"partitions.redundant_experts = {list(self.redundant_experts)!r} is invalid: a non-empty list of integers >= 0"
            )
        bad = [m for m in self.kv_modes if m not in KV_MODES or m == "none"]
        if bad:
            raise SpecError(f"partitions.kv_modes = {bad[0]!r} is invalid: allowed kvp, cp")


def enumerate_partitions(num_gpus: int, space: PartitionSpace) -> np.ndarray:
    """Candidate partitions of ``num_gpus`` GPUs as rows of ``PARTITION_FIELDS`` (float64): every
    combination whose stage the EP and dense-FFN degrees divide, with at most one redundant expert
    slot per EP rank (``redundant_experts <= ep``, as DeepSeek-V3 deploys EPLB: one redundant
    expert per GPU), which keeps wide EP (DeepSeek-V3's 256 + 32 = 288 slots on EP72) from
    multiplying every narrow-EP candidate.

    >>> enumerate_partitions(2, PartitionSpace(tp=(1, 2), ep=(1,), pp=(1,), dp_attn=(1,), kvp=(1,), dense_tp=(2,))).tolist()
    [[2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 0.0]]
    """
    rows = []
    modes = [KV_MODES[m] for m in space.kv_modes]
    for tp, dp_attn, kvp, pp, ep, dense, spare in itertools.product(
        space.tp, space.dp_attn, space.kvp, space.pp, space.ep, space.dense_tp, space.redundant_experts
    ):
        g = tp * dp_attn * kvp
        replica = pp * g
        if num_gpus % replica or g % ep or g % dense or spare > ep:
            continue
        for mode in [0] if kvp == 1 else modes:
            row = {
                "tp": tp,
                "ep": ep,
                "pp": pp,
                "dp": num_gpus // replica,
                "dp_attn": dp_attn,
                "kvp": kvp,
                "kv_mode": mode,
                "dense_tp": dense,
                "redundant_experts": spare,
            }
            rows.append([row[f] for f in PARTITION_FIELDS])
    return np.array(rows, dtype=float).reshape(-1, len(PARTITION_FIELDS))


def partition_table(num_gpus: list[int], space: PartitionSpace) -> tuple[np.ndarray, np.ndarray]:
    """Candidates for every cluster size, padded to one length: (table [N, P, fields], mask [N, P])."""
    tables = [enumerate_partitions(int(n), space) for n in num_gpus]
    for n, t in zip(num_gpus, tables):
        if not len(t):
            raise SpecError(f"num_gpus = {n} is invalid: no partition in the search space divides it")
    width = max(len(t) for t in tables)
    table = np.stack([np.concatenate([t, np.repeat(t[:1], width - len(t), axis=0)]) for t in tables])
    mask = np.stack([np.arange(width) < len(t) for t in tables])
    return table, mask


def partitions_from_table(table) -> Partition:
    return Partition(**{f: table[..., i] for i, f in enumerate(PARTITION_FIELDS)})


def stack(specs: list) -> Any:
    """Stack same-type specs into one spec whose leaves have a leading axis."""
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x, dtype=float) for x in xs]), *specs)


@dataclasses.dataclass(frozen=True)
class GridInputs:
    """Everything the lifted kernel reads, as host arrays (leading axis = the grid axis)."""

    rows: ModelSpec  # [R]
    hardware: HardwareSpec  # [H]
    partitions: np.ndarray  # [N, P, fields]
    partition_mask: np.ndarray  # [N, P]
    contexts: np.ndarray  # [C]
    dense_partitions: np.ndarray | None = None  # [N, P', fields]: candidates for dense models (ep = 1)
    dense_partition_mask: np.ndarray | None = None

    @property
    def shape(self) -> dict[str, int]:
        return {
            "row": len(self.rows.n_layers),
            "hardware": len(self.hardware.hbm_bw),
            "num_gpus": self.partitions.shape[0],
            "context": len(self.contexts),
        }

    @property
    def n_partitions(self) -> int:
        return self.partitions.shape[1]

    def take(self, axis: str, idx: np.ndarray) -> GridInputs:
        """The inputs restricted to positions ``idx`` of grid ``axis``."""
        pick = lambda tree: jax.tree_util.tree_map(lambda x: x[idx], tree)  # noqa: E731
        if axis == "row":
            return dataclasses.replace(self, rows=pick(self.rows))
        if axis == "hardware":
            return dataclasses.replace(self, hardware=pick(self.hardware))
        if axis == "num_gpus":
            dense = (
                {}
                if self.dense_partitions is None
                else {"dense_partitions": self.dense_partitions[idx], "dense_partition_mask": self.dense_partition_mask[idx]}
            )
            return dataclasses.replace(self, partitions=self.partitions[idx], partition_mask=self.partition_mask[idx], **dense)
        return dataclasses.replace(self, contexts=self.contexts[idx])


def _score(m, hw, p, pmask, wl, acc, legal):
    """Throughput per GPU of one candidate, or -1 where it is illegal or does not fit."""
    r = decode_point(m, hw, p, wl, acc)
    ok = pmask & r.feasible if legal else pmask & partition_valid(m, p) & r.feasible
    return jnp.where(ok, r.throughput_per_gpu, -1.0)


def best_partition(
    m, hw, parts: Partition, pmask, wl: Workload, acc: Accounting, legal: bool = False
) -> tuple[Partition, jax.Array, jax.Array]:
    """(winning partition, its throughput per GPU, whether any candidate is feasible): the argmax
    over candidates, on the device. Only the score is computed for every candidate. ``legal``:
    ``pmask`` already excludes the partitions that are illegal for ``m`` (``legal_masks``)."""
    score = jax.vmap(_score, in_axes=(None, None, 0, 0, None, None, None))(m, hw, parts, pmask, wl, acc, legal)
    i = _argmax(score)
    return jax.tree_util.tree_map(lambda x: x[i], parts), score[i], score[i] > 0


def _argmax(x, halvings: int = 2):
    """``jnp.argmax`` of a 1-D ``x``: the first maximum, or the first NaN. XLA's CPU argmax
    reduces element by element, so ``x`` is first halved ``halvings`` times by comparing its two
    halves elementwise (vectorised), each survivor keeping its index; ties go to the lower index."""

    def pick(a, b):  # the (value, index) pair argmax prefers
        (a_val, a_idx), (b_val, b_idx) = a, b
        a_nan, b_nan = jnp.isnan(a_val), jnp.isnan(b_val)
        first = a_idx < b_idx
        take_a = jnp.where(a_nan | b_nan, a_nan & (~b_nan | first), (a_val > b_val) | ((a_val == b_val) & first))
        return jnp.where(take_a, a_val, b_val), jnp.where(take_a, a_idx, b_idx)

    n = x.shape[0]
    val, idx = jax.lax.stop_gradient(x), jnp.arange(n)  # an index has no derivative
    for _ in range(halvings):
        if val.shape[0] % 2:  # pad with a candidate that loses to every real one
            val, idx = jnp.append(val, -jnp.inf), jnp.append(idx, n)
        val, idx = pick(*zip(jnp.split(val, 2), jnp.split(idx, 2)))
    init = (jnp.asarray(-jnp.inf, val.dtype), jnp.asarray(n, idx.dtype))
    return jax.lax.reduce((val, idx), init, pick, (0,))[1]


def elasticities(m, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting):
    """∂log(throughput per GPU)/∂log(x) for each ``ELASTICITY_FIELDS`` hardware quantity at a fixed
    partition, by reverse-mode autodiff of the model with continuous B_max (the floor has no
    derivative). Example (tests): Llama-3-70B, 8×H100 TP8, batch 1: t = t_hbm + exposed all-reduces
    with t_hbm ∝ 1/BW, so the HBM-bandwidth elasticity is t_hbm / t and the FLOP/s one is 0."""
    smooth = dataclasses.replace(acc, integer_batch=False)

    def log_tput(h):
        return jnp.log(jnp.maximum(decode_point(m, h, p, wl, smooth).throughput_per_gpu, 1e-30))

    grad = jax.grad(log_tput)(hw)
    return jnp.stack([getattr(grad, f) * getattr(hw, f) for f in ELASTICITY_FIELDS])


def best_partition_point(m, hw, parts: Partition, pmask, wl: Workload, acc: Accounting, sensitivities: bool = False):
    """Full result at the best feasible candidate, plus ``degrees`` (0 where no candidate is
    feasible) and, with ``sensitivities``, ``elasticities`` (NaN where infeasible). ``pmask``
    marks the legal candidates (``legal_masks``)."""
    best, _, found = best_partition(m, hw, parts, pmask, wl, acc, legal=True)
    r = decode_point(m, hw, best, wl, acc)
    # with no feasible candidate the "winner" is arbitrary: report no components rather than its numbers
    r = StepCosts(**{k: jnp.where(found, v, jnp.nan) for k, v in vars(r).items()})
    r = dataclasses.replace(
        r,
        feasible=found,
        bound=jnp.where(found, r.bound, 3).astype(jnp.int32),
        step_time=jnp.where(found, r.step_time, jnp.inf),
        throughput=jnp.where(found, r.throughput, 0.0),
        throughput_per_gpu=jnp.where(found, r.throughput_per_gpu, 0.0),
        tokens_per_s_per_user=jnp.where(found, r.tokens_per_s_per_user, 0.0),
    )
    extra = {"degrees": jnp.stack([getattr(best, f) for f in PARTITION_FIELDS]) * found}
    if sensitivities:
        extra["elasticities"] = jnp.where(r.feasible, elasticities(m, hw, best, wl, acc), jnp.nan)
    return r, extra


def all_partitions_point(m, hw, parts: Partition, pmask, wl: Workload, acc: Accounting, sensitivities: bool = False):
    """Every candidate's result (partition axis kept last); illegal candidates (``pmask`` false,
    ``legal_masks``) marked infeasible."""

    def one(p, ok):
        r = decode_point(m, hw, p, wl, acc)
        extra = {"partition_valid": ok}
        if sensitivities:
            extra["elasticities"] = jnp.where(r.feasible & ok, elasticities(m, hw, p, wl, acc), jnp.nan)
        return dataclasses.replace(
            r,
            feasible=r.feasible & ok,
            bound=jnp.where(ok, r.bound, 3),
            throughput=jnp.where(ok, r.throughput, 0.0),
            throughput_per_gpu=jnp.where(ok, r.throughput_per_gpu, 0.0),
            tokens_per_s_per_user=jnp.where(ok, r.tokens_per_s_per_user, 0.0),
        ), extra

    return jax.vmap(one)(parts, pmask)


def lift(point):
    """Lift ``point(m, hw, parts, pmask[P], context, *shared)`` over the grid axes
    (row, hardware, num_gpus, context); ``shared`` arguments are the same for every point. Tables
    (``Partition`` of [N, P] leaves) and masks [R, N, P] (``legal_masks``) may be tuples (``parts``
    is then a tuple too)."""

    def lifted(rows, hardware, tables, masks, contexts, *shared):
        n = len(shared)
        f = jax.vmap(point, in_axes=(None, None, None, None, 0) + (None,) * n)  # context
        f = jax.vmap(f, in_axes=(None, None, 0, 0, None) + (None,) * n)  # num_gpus
        f = jax.vmap(f, in_axes=(None, 0, None, None, None) + (None,) * n)  # hardware
        f = jax.vmap(f, in_axes=(0, None, None, 0, None) + (None,) * n)  # row (masks are per model)
        return f(rows, hardware, tables, masks, contexts, *shared)

    return lifted


def lift_flat(point):
    """``lift`` by one vmap over the flattened points, each gathering its own inputs.

    Same arguments, same results as ``lift``. For kernels with loops (the κ* bisections, the
    optax diagnostic) it traces about three times faster: JAX batches a loop's body once per vmap
    level, so the four nested vmaps of ``lift`` batch every loop four times. But it runs slower:
    XLA can no longer hoist the per-model work out of the inner axes (κ*: 1.2 against 0.45 ms per
    point), so only small κ* grids use it (``analysis.breakeven.FLAT_BELOW``).
    """

    def lifted(rows, hardware, tables, masks, contexts, *shared):
        def size(tree):
            return jax.tree_util.tree_leaves(tree)[0].shape[0]

        shape = (size(rows), size(hardware), jax.tree_util.tree_leaves(masks)[0].shape[1], size(contexts))
        r, h, n, c = (i.ravel() for i in jnp.meshgrid(*map(jnp.arange, shape), indexing="ij"))

        def take(tree, *index):
            return jax.tree_util.tree_map(lambda x: x[index], tree)

        def one(r, h, n, c):
            return point(take(rows, r), take(hardware, h), take(tables, n), take(masks, r, n), take(contexts, c), *shared)

        out = jax.vmap(one)(r, h, n, c)
        return jax.tree_util.tree_map(lambda x: x.reshape(shape + x.shape[1:]), out)

    return lifted


@functools.cache
def lifted_kernel(keep_partitions: bool, sensitivities: bool = False):
    """``f(rows, hardware, candidates, masks, contexts, batch, acc)`` over the grid axes (arguments: ``device_inputs``)."""
    point = all_partitions_point if keep_partitions else best_partition_point

    def at(m, hw, parts, pmask, context, batch, acc):
        return point(m, hw, parts, pmask, Workload(context=context, batch=batch), acc, sensitivities)

    return jax.jit(lift(at))


def chunk_plan(shape: dict[str, int], n_partitions: int, max_evaluations: int) -> tuple[str, int]:
    """(axis, block) so one chunk evaluates at most ``max_evaluations`` candidates where possible:
    chunks run along the largest grid axis."""
    axis = max(AXES, key=lambda a: shape[a])
    per_index = n_partitions * int(np.prod([shape[a] for a in AXES if a != axis]))
    return axis, int(max(1, min(shape[axis], max_evaluations // max(per_index, 1))))


def cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=dtype), tree)


@jax.jit
def legal_masks(rows: ModelSpec, parts: Partition, mask):
    """``mask`` [N, P] widened to [R, N, P]: the candidates present in the table that are legal
    splits of each row's model (``partition_valid``). Evaluated once per model and candidate here,
    as its own computation: inside a kernel XLA's fusion would redo it at every hardware and context."""
    legal = jax.vmap(jax.vmap(partition_valid, in_axes=(None, 0)), in_axes=(None, 0))  # num_gpus, candidate
    return jax.vmap(lambda m: mask & legal(m, parts))(rows)


def device_inputs(inputs: GridInputs, dtype) -> tuple:
    """The lifted kernels' leading arguments: (rows, hardware, candidates, masks, contexts).
    Candidates are a ``Partition`` of [N, P] arrays, one contiguous array per field (the kernels
    read every field of every candidate; rows of a table would be strided loads), masks from
    ``legal_masks``; with dense candidates, candidates and masks are (all, dense) pairs."""

    def candidates(table):
        return Partition(**{f: jnp.asarray(np.ascontiguousarray(table[..., i]), dtype) for i, f in enumerate(PARTITION_FIELDS)})

    rows = cast(inputs.rows, dtype)
    tables, masks = candidates(inputs.partitions), jnp.asarray(inputs.partition_mask)
    if inputs.dense_partitions is not None:
        tables = (tables, candidates(inputs.dense_partitions))
        masks = (masks, jnp.asarray(inputs.dense_partition_mask))
    masks = jax.tree_util.tree_map(
        functools.partial(legal_masks, rows), tables, masks, is_leaf=lambda x: isinstance(x, Partition)
    )
    return rows, cast(inputs.hardware, dtype), tables, masks, jnp.asarray(inputs.contexts, dtype)


def local_devices() -> list:
    """This process's devices (CPU: force several with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``)."""
    return jax.local_devices()


def chunks(inputs: GridInputs, max_evaluations: int, skip=frozenset()):
    """Yield ``(chunk_id, axis, positions, sub_inputs, trim)`` along the largest grid axis.

    Every chunk has the same shape (the last is padded by repeating its final index), so a kernel
    compiles once; ``trim`` cuts a result array back to the chunk's real positions."""
    axis, block = chunk_plan(inputs.shape, inputs.n_partitions, max_evaluations)
    size = inputs.shape[axis]
    for cid, start in enumerate(range(0, size, block)):
        if cid in skip:
            continue
        n = min(start + block, size) - start
        sub = inputs.take(axis, np.minimum(np.arange(start, start + block), size - 1))
        trim = lambda x, n=n: np.array(x)[(slice(None),) * AXES.index(axis) + (slice(0, n),)]  # noqa: E731
        yield cid, axis, slice(start, start + n), sub, trim


def evaluate_chunks(
    inputs: GridInputs,
    batch: float,
    acc: Accounting,
    keep_partitions: bool,
    max_evaluations: int,
    dtype,
    skip: set[int] = frozenset(),
    sensitivities: bool = False,
    devices: list | None = None,
    extra=None,
) -> Iterator[tuple[int, str, slice, dict]]:
    """Yield ``(chunk_id, axis, positions, results)`` chunk by chunk, results as host arrays.

    Chunks in ``skip`` are not evaluated. With several ``devices``, that many chunks are in flight
    at once, one per device: JAX dispatches asynchronously and runs a jitted call on the device its
    inputs live on. Each device runs the very executable a single-device run uses on whole chunks,
    so results are bit-for-bit the same. (Splitting one chunk across a mesh changes XLA's code
    generation and the last bit of float32 results.) ``extra(*device_inputs)``, if given, is a
    second kernel whose dict of outputs joins each chunk's results (the frontier, engine/frontier.py).
    """
    kernel = lifted_kernel(keep_partitions, sensitivities)
    devices = devices or [None]
    shared = (jnp.asarray(batch, dtype), cast(acc, dtype))
    pending = chunks(inputs, max_evaluations, skip)
    for group in itertools.zip_longest(*[pending] * len(devices)):
        launched = []
        for device, chunk in zip(devices, group):
            if chunk is None:
                break
            args = (*device_inputs(chunk[3], dtype), *shared)
            if device is not None:
                args = jax.device_put(args, device)
            launched.append((chunk, (*kernel(*args), extra(*args[:5]) if extra is not None else {})))
        for (cid, axis, positions, _, trim), (out, more, added) in launched:
            yield cid, axis, positions, {k: trim(v) for k, v in {**vars(out), **more, **added}.items()}


def n_chunks(inputs: GridInputs, max_evaluations: int) -> int:
    axis, block = chunk_plan(inputs.shape, inputs.n_partitions, max_evaluations)
    return -(-inputs.shape[axis] // block)
