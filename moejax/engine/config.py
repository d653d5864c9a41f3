"""The typed sweep config: one frozen ``SweepConfig`` (nested frozen dataclasses: grid, partitions,
dtypes, accounting overrides, interactivity, SLO, hardware space, κ* settings), built once at the
command boundary from the composed config's plain values (``build``), its one ``validate()``, and
``check_sizes``: the grid's working memory and dataset size against the limits and this machine.

Nothing here knows Hydra: the Hydra schemas (``moejax/schema.py``) are generated from these
classes, and the command boundary hands their plain values (``OmegaConf.to_container``) to ``build``.
Errors are one-line ``SpecError``s naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Mapping
from typing import Any, Optional

from ..catalogue import DTYPE_BYTES, available, model_entry
from ..physics.baseline import FAMILIES
from ..physics.specs import EXPERT_TRAFFIC, KV_MODES, ROOFLINES, Accounting, HardwareSpec, SpecError
from .frontier import validate as validate_frontier
from .grid import PartitionSpace
from .values import freeze, items, plain
from .workloads import grid_workloads


def space_keys(spec=HardwareSpec) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """``grid.hardware_space`` key -> (the ``HardwareSpec`` fields it varies, None for multipliers or the
    name tag of absolute values), in the keys' declared order: from the fields' ``space`` metadata."""
    keys: dict[str, tuple[tuple[str, ...], str | None]] = {}
    varied = [f for f in dataclasses.fields(spec) if f.metadata.get("space")]
    for f in sorted(varied, key=lambda f: f.metadata["space"][0]):
        _, key, *tag = f.metadata["space"]
        keys[key] = (keys.get(key, ((), None))[0] + (f.name,), tag[0] if tag else None)
    return keys


HARDWARE_SPACE = space_keys()  # grid.hardware_space key -> (HardwareSpec fields, None or the tag of absolute values)

# ``grid.partitions``: the degrees of ``engine.grid.PartitionSpace``, unchecked until ``validate``
Partitions = dataclasses.make_dataclass(
    "Partitions",
    [(f.name, typing.get_type_hints(PartitionSpace)[f.name], f.default) for f in dataclasses.fields(PartitionSpace)],
    frozen=True,
    namespace={
        "__doc__": "``grid.partitions``: the degree lists the search may use (``space()``: the PartitionSpace).",
        "space": lambda self: PartitionSpace(**{k: tuple(v) for k, v in items(self).items()}),
    },
)

# ``grid.hardware_space``: per key, multipliers (or absolute values) or None (not varied)
HardwareSpace = dataclasses.make_dataclass(
    "HardwareSpace",
    [(key, Optional[tuple[float, ...]], None) for key in HARDWARE_SPACE],
    frozen=True,  # noqa: UP007
    namespace={
        "__doc__": "``grid.hardware_space``: multipliers on each catalogue accelerator's numbers (``flops`` scales "
        "flops_bf16 and flops_fp8), ``island_size`` absolute GPU counts; None leaves a quantity as it is. Keys: "
        "``HardwareSpec`` fields' ``space`` metadata. E.g. ``grid.hardware_space.hbm_bw=[1,2]``."
    },
)

# ``grid.accounting``: ``mode`` names the preset (conf/accounting/); every other field is None (the
# preset's value) or overrides the preset
AccountingOverrides = dataclasses.make_dataclass(
    "AccountingOverrides",
    [("mode", str, "realistic")]
    + [
        (f.name, Optional[type(f.default) if f.metadata.get("static") else float], None)  # noqa: UP007 (Hydra needs Optional)
        for f in dataclasses.fields(Accounting)
        if f.name != "mode"
    ],
    frozen=True,
)


@dataclasses.dataclass(frozen=True)
class Dtypes:
    """Serving dtypes of every model of a grid (moejax.catalogue.load_model keys); None keeps the
    catalogue entry's (or the loader's default)."""

    weights: Optional[str] = "fp8"  # noqa: UP007 (Hydra needs Optional)
    kv: Optional[str] = "bf16"  # noqa: UP007
    activations: Optional[str] = "bf16"  # noqa: UP007
    experts: Optional[str] = None  # noqa: UP007
    embeddings: Optional[str] = None  # noqa: UP007
    gemm: Optional[str] = None  # noqa: UP007
    attention: Optional[str] = None  # noqa: UP007
    dispatch: Optional[str] = None  # noqa: UP007


@dataclasses.dataclass(frozen=True)
class Interactivity:
    """``grid.interactivity``: the frontier's levels, ``count`` log-spaced tokens/s per user."""

    min: float = 1.0
    max: float = 1000.0
    count: int = 31


@dataclasses.dataclass(frozen=True)
class Slo:
    """``grid.slo``: the best configuration meeting every limit set (None: no limit), e.g.
    ``grid.slo.tpot_max=0.05`` (s per output token)."""

    tpot_max: Optional[float] = None  # noqa: UP007 (Hydra needs Optional)
    tokens_per_s_per_user_min: Optional[float] = None  # noqa: UP007
    ttft_max: Optional[float] = None  # noqa: UP007


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridConfig:
    """A grid (``conf/grid/*.yaml``, ``+grid=NAME``): what to sweep and how."""

    name: str
    models: tuple[str, ...]
    kappas: tuple[float, ...] = (5.0,)
    baseline: str = "keep-attention"
    hardware: tuple[str, ...]
    num_gpus: tuple[int, ...]
    contexts: Optional[tuple[float, ...]] = None  # noqa: UP007  tokens; or grid.workloads (one of the two)
    workloads: Any = None  # {isl, osl} or a list of them: contexts isl + osl/2, TTFT and serving (engine/workloads.py)
    prefill_chunk: float = 0.0  # prompt tokens per decode step in chunked prefill (<= 0: the whole prompt in one step)
    economics: Any = None  # {price_per_gpu_hour: {hardware: USD}, board_power: {hardware: W}}: catalogue overrides
    batch: Any = "bmax"  # "bmax" or sequences per replica
    batches: Any = None  # [1, 2, 4, ...] sequences per replica: batch as a search axis + the frontier (engine/frontier.py)
    interactivity: Interactivity = dataclasses.field(default_factory=Interactivity)  # frontier levels
    slo: Slo = dataclasses.field(default_factory=Slo)  # limits on tpot / tokens/s/user / ttft
    hardware_space: HardwareSpace = dataclasses.field(default_factory=HardwareSpace)  # all None: no design space
    partitions: Partitions = dataclasses.field(default_factory=Partitions)
    dtypes: Dtypes = dataclasses.field(default_factory=Dtypes)
    accounting: AccountingOverrides = dataclasses.field(default_factory=AccountingOverrides)


@dataclasses.dataclass(frozen=True)
class Breakeven:
    """κ* solver settings (moejax.analysis.breakeven)."""

    include: bool = False  # the sweep adds kappa_star variables to its dataset
    kappa_min: float = 0.25
    kappa_max: float = 64.0
    bisection_steps: int = 16
    rounds: int = 6
    adam_steps: int = 60
    learning_rate: float = 0.2
    tolerance: float = 1e-3


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Everything a grid command computes from, typed and validated (``build``). ``grid_source`` is
    the grid as composed (JSON), recorded in the dataset and hashed for resume."""

    grid: GridConfig
    precision: str = "float32"
    keep_partitions: Any = False
    sensitivities: Any = False  # add elasticities of throughput to hardware quantities
    overwrite: Any = False  # replace an existing out= file
    summary: Any = True
    progress: Any = "auto"  # auto | true | false
    max_chunk_evaluations: int = 2**24  # candidate evaluations per chunk: bounds memory
    max_output_bytes: float = 8e9  # refuse a dataset estimated larger (uncompressed), before computing
    max_memory_bytes: float = 4e9  # refuse a grid whose inputs need more, before allocating
    parts_dir: str = "outputs/.parts"  # completed chunks, kept until the dataset is written
    breakeven: Breakeven = dataclasses.field(default_factory=Breakeven)
    grid_source: str = ""

    def validate(self, kappa_star: bool = False) -> None:
        """Every value and catalogue name, before anything is computed; one-line ``SpecError`` on the
        first problem. The κ* settings are checked where κ* is solved (``kappa_star``, or
        ``breakeven.include``)."""
        validate(self, kappa_star or self.breakeven.include is True)


def _build(cls, values, path: str = ""):
    """``cls`` from a plain mapping: nested dataclasses from mappings, other values frozen as given
    (checked by ``validate``). Below the top level (``path`` set) a key the class does not declare is
    refused in one line; the top level also holds the command's own keys (``out``, ``model`` ...)."""
    if not isinstance(values, Mapping):
        return values
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if path and unknown:
        raise SpecError(f"{path}.{unknown[0]} is not a known field: allowed {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in values:
            kind = hints[name]
            nested = dataclasses.is_dataclass(kind) and isinstance(values[name], Mapping)
            where = f"{path}.{name}" if path else name
            kwargs[name] = _build(kind, values[name], where) if nested else freeze(values[name])
    return cls(**kwargs)


def build(values: Mapping, kappa_star: bool = False) -> SweepConfig:
    """The validated ``SweepConfig`` of a composed config's plain values (``grid`` required)."""
    if values.get("grid") is None:
        raise SpecError("grid is missing: choose one with +grid=NAME")
    config = _build(SweepConfig, {**values, "grid_source": json.dumps(values["grid"])})
    config.validate(kappa_star)
    return config


def grid_source(config: SweepConfig) -> dict:
    """The grid as composed (plain values, key order kept): what the dataset records and the resume hash covers."""
    return json.loads(config.grid_source) if config.grid_source else plain(config.grid)


INT32_MAX = 2**31 - 1  # coordinates and degrees are stored as int32
KV_SPLITS = [m for m in KV_MODES if KV_MODES[m]]  # kvp, cp: how kvp > 1 splits the KV sequence
FLAGS = ("overwrite", "keep_partitions", "sensitivities", "summary")  # true or false, nothing else


def _positive(field: str, values, integer: bool = False, zero: bool = False) -> None:
    """Every value a finite number > 0 (>= 0 with ``zero``); with ``integer``, whole and <= ``INT32_MAX``."""
    if not values:
        raise SpecError(f"{field} = [] is invalid: needs at least one value")
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (v >= 0 if zero else v > 0)
        if not ok or (integer and (int(v) != v or v > INT32_MAX)):
            kind = f"integer <= {INT32_MAX}" if integer else "number"
            raise SpecError(f"{field} = {v!r} is invalid: must be a {'non-negative' if zero else 'positive'} {kind}")


def _choice(field: str, value, allowed) -> None:
    """``value`` one of ``allowed``."""
    if value not in allowed:
        raise SpecError(f"{field} = {value!r} is invalid: allowed {', '.join(map(str, allowed))}")


def validate_partitions(prefix: str, partitions: dict) -> None:
    """A partition search space (``grid.partitions``, the point's ``partitions``) as a mapping of
    degree lists: every degree a non-empty list of positive integers (``redundant_experts``: >= 0),
    ``kv_modes`` a non-empty list of kvp, cp."""
    for field in ("tp", "ep", "pp", "dp_attn", "kvp", "dense_tp", "redundant_experts", "kv_modes"):
        values = partitions.get(field)
        if values is None:
            continue
        if not isinstance(values, list | tuple):
            raise SpecError(f"{prefix}.{field} = {values!r} is invalid: must be a list, e.g. {prefix}.{field}=[{values}]")
        if field == "kv_modes":
            if not values:
                raise SpecError(f"{prefix}.kv_modes = [] is invalid: needs at least one of {', '.join(KV_SPLITS)}")
            for mode in values:
                _choice(f"{prefix}.kv_modes", mode, KV_SPLITS)
        else:
            _positive(f"{prefix}.{field}", list(values), integer=True, zero=field == "redundant_experts")


def _check_moe(name: str) -> None:
    """A grid's models are MoEs (their dense baselines are derived from them)."""
    experts = model_entry(name)["architecture"].get("n_experts", 1)
    if isinstance(experts, int | float) and experts <= 1:
        moes = [m for m in available("model") if model_entry(m)["architecture"].get("n_experts", 1) > 1]
        raise SpecError(
            f"grid.models = {name!r} is invalid: it is a dense model (n_experts = {experts}); a grid's models are "
            f"MoEs, their dense baselines derived from them: allowed {', '.join(moes)}"
        )


def _validate_grid(grid: GridConfig, precision: str) -> None:
    """Values and names of a grid; one-line ``SpecError`` on the first problem."""
    for field, kind in (("models", "model"), ("hardware", "hardware")):
        names = list(getattr(grid, field))
        if not names:
            raise SpecError(f"grid.{field} = [] is invalid: needs at least one {kind} name")
        for name in names:
            if not str(name).endswith((".yaml", ".json")):  # a path is checked when it is loaded
                _choice(f"grid.{field}", name, available(kind))
        if len(set(names)) != len(names):
            raise SpecError(f"grid.{field} = {names!r} is invalid: names must be unique")
    _positive("grid.kappas", list(grid.kappas))
    _positive("grid.num_gpus", list(grid.num_gpus), integer=True)
    if grid.contexts is not None:  # whole tokens (a workload's isl + osl/2 may be a half)
        _positive("grid.contexts", list(grid.contexts), integer=True)
    for field in ("kappas", "num_gpus", "contexts"):
        values = getattr(grid, field)
        if values is not None and len(set(values)) != len(values):
            raise SpecError(f"grid.{field} = {list(values)!r} is invalid: values must be unique")
    validate_partitions("grid.partitions", items(grid.partitions))
    if grid.batch != "bmax":  # sequences per replica: whole ones unless the accounting is continuous
        if isinstance(grid.batch, str):
            raise SpecError(f"grid.batch = {grid.batch!r} is invalid: bmax or a positive integer (sequences per replica)")
        _positive("grid.batch", [grid.batch], integer=grid.accounting.integer_batch is not False)
    for name in grid.models:
        _check_moe(name)
    _choice("grid.baseline", grid.baseline, FAMILIES)
    for field, name in items(grid.dtypes).items():
        if name is not None:
            _choice(f"grid.dtypes.{field}", name, DTYPE_BYTES)
    _choice("grid.accounting.mode", grid.accounting.mode, available("accounting"))
    if grid.accounting.expert_traffic is not None:
        _choice("grid.accounting.expert_traffic", grid.accounting.expert_traffic, EXPERT_TRAFFIC)
    if grid.accounting.roofline is not None:
        _choice("grid.accounting.roofline", grid.accounting.roofline, ROOFLINES)
    _choice("precision", precision, ("float32", "float64"))
    if not isinstance(grid.prefill_chunk, int | float) or not math.isfinite(grid.prefill_chunk):
        raise SpecError(f"grid.prefill_chunk = {grid.prefill_chunk!r} is invalid: a number of tokens (<= 0: whole prompt)")


def _finite_positive(v, whole: bool) -> bool:
    """``v`` is a number (not a bool), finite and > 0; with ``whole``, an integer."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return ok and (not whole or int(v) == v)


def _validate_hardware_space(grid: GridConfig) -> None:
    """``grid.hardware_space``: every key set is a non-empty list of positive numbers."""
    for field, values in items(grid.hardware_space).items():
        if values is None:
            continue
        if field not in HARDWARE_SPACE:
            raise SpecError(f"grid.hardware_space.{field} is not a known field: allowed {', '.join(HARDWARE_SPACE)}")
        whole = HARDWARE_SPACE[field][1] is not None  # absolute GPU counts (island_size)
        good = isinstance(values, tuple | list) and values and all(_finite_positive(v, whole) for v in values)
        if not good:
            kind = "whole numbers of GPUs" if whole else "finite numbers"
            raise SpecError(f"grid.hardware_space.{field} = {plain(values)!r} is invalid: a non-empty list of positive {kind}")


# Upper bounds of the κ* solver's loop counts: past them nothing is gained, and a loop of 10⁹ would
# overflow (2^(steps+1)) or run for days.
SOLVER_LIMITS = {  # field: (the largest value, why)
    "bisection_steps": (60, "60 halvings bracket log kappa below float64 resolution"),
    "rounds": (100, "the partition search settles in a few rounds"),
    "adam_steps": (100_000, "a step costs one kappa* gradient over the whole grid"),
}


def _validate_breakeven(be) -> None:
    """The κ* solver settings (``breakeven.*``)."""
    _positive("breakeven.kappa_min", [be.kappa_min])
    _positive("breakeven.kappa_max", [be.kappa_max])
    if be.kappa_min >= be.kappa_max:
        raise SpecError(f"breakeven.kappa_min = {be.kappa_min} is invalid: must be below kappa_max = {be.kappa_max}")
    for field, (most, why) in SOLVER_LIMITS.items():
        value = getattr(be, field)
        _positive(f"breakeven.{field}", [value], integer=True)
        if value > most:
            raise SpecError(f"breakeven.{field} = {value!r} is invalid: must be at most {most} ({why})")
    _positive("breakeven.learning_rate", [be.learning_rate])
    _positive("breakeven.tolerance", [be.tolerance])


def validate(config: SweepConfig, kappa_star: bool) -> None:
    """``SweepConfig.validate``: the on/off flags, the grid (names, values, partition space, hardware
    space, workloads, frontier), the κ* settings (with ``kappa_star``), the chunk size and the byte limits."""
    for field in FLAGS:  # YAML booleans: overwrite=-815 or keep_partitions='1' are refused, not read as true
        value = getattr(config, field)
        if not isinstance(value, bool):
            raise SpecError(f"{field} = {value!r} is invalid: must be true or false")
    _validate_grid(config.grid, config.precision)
    if kappa_star:
        _validate_breakeven(config.breakeven)
    chunk = config.max_chunk_evaluations  # bounds the memory of every chunked command
    if isinstance(chunk, bool) or not (isinstance(chunk, int) and chunk > 0):
        raise SpecError(f"max_chunk_evaluations = {chunk!r} is invalid: must be a positive integer")
    for field in ("max_memory_bytes", "max_output_bytes"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise SpecError(f"{field} = {value!r} is invalid: must be a positive number of bytes")
    _validate_hardware_space(config.grid)
    grid_workloads(config.grid)
    validate_frontier(config.grid)


# Working memory per item, bytes (Python objects, NumPy and device copies; measured, rounded up):
LEVEL_BYTES = 64  # one interactivity level or batch (float64 + float32 arrays, a tuple entry)
HARDWARE_BYTES = 4096  # one design-space accelerator (spec object ~250 B, name, stacked leaves, hw_* variables)
CANDIDATE_BYTES = 256  # one enumerated partition combination per cluster size (a row of 9 floats as lists, then arrays)
CELL_BYTES = 27  # the smallest dataset cell: 16 float32 variables + 2 int8 flags + ... (dataset.estimated_bytes)


def _count(value) -> int:
    return 0 if value is None else 1 if not isinstance(value, list | tuple) else len(value)


def available_memory_bytes() -> float | None:
    """Memory this machine can give a new allocation now: ``MemAvailable`` of ``/proc/meminfo``
    (Linux), else free physical pages (``sysconf``); None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_sizes(config: SweepConfig) -> None:
    """Refuse, from the config alone and before anything is allocated, a grid whose inputs need more
    than ``max_memory_bytes`` of working memory (interactivity levels, batches, design-space
    accelerators, partition candidates) or whose dataset would exceed ``max_output_bytes``
    (uncompressed; a lower bound here, the exact estimate follows once the plan is built). One-line
    ``SpecError`` naming the field. The config is validated (``SweepConfig.validate``)."""
    grid = config.grid
    budget, limit = config.max_memory_bytes, config.max_output_bytes
    available_now = available_memory_bytes()
    machine = available_now is not None and available_now < budget  # the machine, not the setting, is the limit
    setting = budget
    if machine:
        budget = available_now
    levels = int(grid.interactivity.count) if grid.interactivity is not None else 0
    batches = _count(grid.batches)
    space = {k: _count(v) for k, v in items(grid.hardware_space).items() if v is not None}
    hardware = len(grid.hardware) * math.prod(space.values())
    partitions = items(grid.partitions)
    combinations = math.prod(len(v) for v in partitions.values())
    candidates = combinations * len(grid.num_gpus)

    def over(field, value, need):
        if need > budget and machine:
            raise SpecError(
                f"{field} = {value} is invalid: it needs about {need / 1e9:.3g} GB of working memory, over "
                f"the {budget / 1e9:.3g} GB this machine has available (MemAvailable, below max_memory_bytes = "
                f"{setting:.3g}); shrink it or free memory"
            )
        if need > budget:
            raise SpecError(
                f"{field} = {value} is invalid: it needs about {need / 1e9:.3g} GB of working memory, over "
                f"max_memory_bytes = {budget:.3g}; shrink it (or raise max_memory_bytes={need * 1.1:.2g})"
            )

    over("grid.interactivity.count", levels, levels * LEVEL_BYTES)
    over("grid.batches", f"[{batches} values]", batches * LEVEL_BYTES)
    over(
        "grid.hardware_space",
        f"{' x '.join(f'{n} {k}' for k, n in space.items())} values ({hardware:.3g} accelerators)",
        hardware * HARDWARE_BYTES,
    )
    over("grid.partitions", f"{combinations:.3g} combinations", candidates * CANDIDATE_BYTES)
    contexts = _count(grid.contexts) if grid.contexts is not None else _count(grid.workloads)
    cells = len(grid.models) * 2 * len(grid.kappas) * hardware * len(grid.num_gpus) * max(contexts, 1)
    slo = items(grid.slo) if grid.slo is not None else {}
    frontier = batches or grid.workloads is not None or any(v is not None for v in slo.values())
    size = cells * (CELL_BYTES + (4 * (levels + batches) if frontier else 0))
    if size > limit:
        raise SpecError(
            f"max_output_bytes = {limit:.3g} is invalid for this grid: its dataset would take at least "
            f"{size / 1e9:.3g} GB ({cells:.3g} cells, before compression); raise the limit "
            f"(max_output_bytes={size * 1.1:.2g}) or shrink the grid"
        )
