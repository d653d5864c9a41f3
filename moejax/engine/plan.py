"""A sweep plan: a validated grid resolved into kernel inputs (catalogue specs, κ-matched dense
baselines, design-space hardware, partition tables, contexts) and the dataset coordinates."""

from __future__ import annotations

import dataclasses
import itertools
import json

import jax
import numpy as np

from ..catalogue import dense_baseline, load_accounting, load_hardware, load_model
from ..physics import arch
from ..physics.specs import Accounting, HardwareSpec, SpecError
from .config import HARDWARE_SPACE, GridConfig, items
from .frontier import FrontierSpec, frontier_spec, grouped_table, missing_value
from .grid import GridInputs, PartitionSpace, enumerate_partitions, partition_table, stack
from .workloads import economics_arrays, grid_workloads, workload_coords


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated grid: kernel inputs plus how kernel rows map onto dataset coordinates."""

    inputs: GridInputs
    row_map: np.ndarray  # [model, variant, kappa] -> kernel row
    baseline_exists: np.ndarray  # [model, kappa]
    coords: dict
    accounting: Accounting
    batch: float
    frontier: FrontierSpec | None = None  # grid.batches / grid.slo: the frontier search (engine/frontier.py)
    economics: dict = dataclasses.field(default_factory=dict)  # price_per_gpu_hour, board_power per hardware
    context_coords: dict = dataclasses.field(default_factory=dict)  # isl, osl along context (grid.workloads)


def build_plan(grid: GridConfig, keep_partitions: bool) -> SweepPlan:
    """Load the catalogue entries and baselines a validated grid names (``SweepConfig.validate``);
    errors the catalogue alone can tell (a partition space no model splits) are one-line ``SpecError``s."""
    dtypes = items(grid.dtypes)
    models = [load_model(name, **dtypes) for name in grid.models]
    kappas = [float(k) for k in grid.kappas]
    rows, row_map = [], np.full((len(models), 2, len(kappas)), -1)
    exists = np.zeros((len(models), len(kappas)), dtype=bool)
    for i, m in enumerate(models):
        row_map[i, 0, :] = len(rows)
        rows.append(m)
        for j, kappa in enumerate(kappas):
            row_map[i, 1, j] = len(rows)
            try:
                rows.append(jax.tree_util.tree_map(float, dense_baseline(m, kappa, grid.baseline, integer=True)))
                exists[i, j] = True
            except SpecError:  # κ·ρ·P_total below the kept attention: no such dense model
                rows.append(m)
    _check_partition_space(grid.partitions, grid.models, models)
    hardware, hw_names = design_space([load_hardware(name) for name in grid.hardware], list(grid.hardware), grid.hardware_space)
    num_gpus = [int(n) for n in grid.num_gpus]
    space = grid.partitions.space()
    workloads = grid_workloads(grid)
    frontier = frontier_spec(grid, workloads)
    if frontier is None:
        table, mask = partition_table(num_gpus, space)
    else:  # candidates grouped by replica size: the frontier kernel reduces each group as a static slice
        table, mask, groups = grouped_table(num_gpus, space)
        frontier = dataclasses.replace(frontier, groups=groups)
    contexts = np.array([float(c) for c in grid.contexts]) if workloads is None else workloads[0]
    inputs = GridInputs(stack(rows), hardware, table, mask, contexts)
    coords = {
        "model": (np.array(list(grid.models)), {"long_name": "MoE model (catalogue name)"}),
        "variant": (np.array(["moe", "dense"]), {"long_name": "the MoE itself, or its kappa-matched dense baseline"}),
        "kappa": (np.array(kappas), {"units": "1", "long_name": "quality factor: dense params = kappa*rho*P_total"}),
        "hardware": (np.array(hw_names), {"long_name": "accelerator (catalogue name, with design-space multipliers)"}),
        "num_gpus": (np.array(num_gpus, dtype=np.int32), {"units": "1", "long_name": "GPUs in the cluster"}),
        "context": (contexts, {"units": "1", "long_name": "context length in tokens"}),
    }
    if keep_partitions:
        coords["partition"] = (np.arange(table.shape[1], dtype=np.int32), {"long_name": "candidate partition index"})
    acc = grid_accounting(grid.accounting)
    if not any(arch.has_pattern(r) for r in rows):  # no sliding/chunked/sparse/linear layer: skip those phases
        acc = dataclasses.replace(acc, layer_patterns=False)
    batch = 0.0 if grid.batch == "bmax" else float(grid.batch)
    economics = economics_arrays(hw_names, grid.economics)
    extra_coords = {} if workloads is None else workload_coords(workloads[1], workloads[2])
    return SweepPlan(inputs, row_map, exists, coords, acc, batch, frontier, economics, extra_coords)


# grid.hardware_space key -> the HardwareSpec fields its multipliers scale (HardwareSpec metadata)
SPACE_FIELDS = {key: leaves for key, (leaves, tag) in HARDWARE_SPACE.items() if tag is None}


def design_space(hardware: list, names: list[str], space) -> tuple[HardwareSpec, list[str]]:
    """Every catalogue accelerator crossed with the ``grid.hardware_space`` multipliers (and
    absolute values, such as ``island_size``'s): a design space over hardware parameters, as one
    stacked ``HardwareSpec`` (catalogue order, then the space's values with its last field fastest,
    as ``itertools.product``), built array-wise: no Python loop over its points, so 60 x 60 x 60
    values take a fraction of a second. Without a space, the catalogue entries as they are. Names
    record the multipliers: ``h100-sxm|hbm_bwx2|flopsx0.5``."""
    base = stack(hardware)
    axes = {k: list(v) for k, v in (items(space) if space is not None else {}).items() if v is not None}  # None: not varied
    if not axes:
        return base, names
    combos = [g.ravel() for g in np.meshgrid(*[np.asarray(v, dtype=float) for v in axes.values()], indexing="ij")]
    n_hw, n_combo = len(hardware), combos[0].size
    leaves = {f.name: np.repeat(np.asarray(getattr(base, f.name)), n_combo) for f in dataclasses.fields(HardwareSpec)}
    tags = []
    for field, values in zip(axes, combos):
        scaled, tag = HARDWARE_SPACE[field]
        given = np.tile(values, n_hw)  # the same for every leaf the field scales (flops: BF16 and FP8)
        for leaf in scaled:
            leaves[leaf] = given if tag else leaves[leaf] * given
        tags.append([f"{tag}={v:g}" if tag else f"{field}x{v:g}" for v in axes[field]])
    suffixes = ["|".join(combo) for combo in itertools.product(*tags)]
    return HardwareSpec(**leaves), [f"{name}|{suffix}" for name in names for suffix in suffixes]


def _check_partition_space(space, names, models) -> None:
    """Each degree list of the search space must hold a value that splits every model (others are
    masked per model by the search)."""
    for name, m in zip(names, models):
        heads, experts, layers = float(m.n_heads), float(m.n_experts), float(m.n_layers)
        if not any(heads % tp == 0 for tp in space.tp):
            raise SpecError(f"grid.partitions.tp = {list(space.tp)} is invalid: none divides the {heads:g} heads of {name}")
        if not any((experts + spare) % ep == 0 for ep in space.ep for spare in space.redundant_experts):
            raise SpecError(
                f"grid.partitions.ep = {list(space.ep)} is invalid: none divides the {experts:g} experts "
                f"(plus redundant_experts {list(space.redundant_experts)}) of {name}"
            )
        if not any(pp <= layers for pp in space.pp):
            raise SpecError(
                f"grid.partitions.pp = {list(space.pp)} is invalid: every value exceeds the {layers:g} layers of {name}"
            )


def mask_missing_baselines(plan: SweepPlan, axis: str, positions: slice, results: dict) -> None:
    """Rows standing in for a dense baseline that cannot exist report infeasible, not numbers."""
    missing = {int(plan.row_map[m, 1, k]) for m, k in zip(*np.nonzero(~plan.baseline_exists))}
    first = positions.start if axis == "row" else 0
    for row in missing:
        local = row - first
        if not 0 <= local < results["feasible"].shape[0]:
            continue
        for name, values in results.items():
            if name == "feasible":
                values[local] = False
            elif name == "bound":
                values[local] = 3
            elif name in ("degrees", "partition_valid", "throughput", "throughput_per_gpu"):
                values[local] = 0
            elif name == "step_time":
                values[local] = np.inf
            elif plan.frontier is not None and name.startswith(("frontier_", "at_batch_", "slo_", "serving_")):
                values[local] = missing_value(name, plan.frontier)
            else:
                values[local] = np.nan


def grid_accounting(conf) -> Accounting:
    """The ``grid.accounting`` preset (``mode``) with the fields the grid sets on top of it."""
    overrides = {k: v for k, v in items(conf).items() if k != "mode" and v is not None}
    return load_accounting(conf.mode, **overrides)


def partition_space_json(grid) -> str:
    """The partition space a grid searches, as JSON for the dataset attrs: every degree list and
    the number of candidates per cluster size (``candidates``), beside the default space's count
    (``default_candidates``). Results (best partition, κ*) depend on it, not only on the point."""
    space = grid.partitions.space()

    def count(s):
        return {str(int(n)): len(enumerate_partitions(int(n), s)) for n in grid.num_gpus}

    return json.dumps(
        {
            **{k: list(v) for k, v in dataclasses.asdict(space).items()},
            "candidates": count(space),
            "default_candidates": count(PartitionSpace()),
        }
    )


def partition_space_note(space_json: str) -> str | None:
    """One line naming what a narrower-than-default search space leaves out (None when it holds
    every default degree), for the reports of the sweep and the κ* commands."""
    space, default = json.loads(space_json), dataclasses.asdict(PartitionSpace())
    missing = {k: [v for v in default[k] if v not in space[k]] for k in default}
    missing = {k: v for k, v in missing.items() if v}
    if not missing:
        return None
    left_out = ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in missing.items())
    counts = ", ".join(f"{space['candidates'][n]} of {space['default_candidates'][n]} on {n} GPUs" for n in space["candidates"])
    return (
        f"note: searched a narrower partition space than the default (leaves out {left_out}; candidates {counts}): "
        "results can differ from a grid searching the default space (set grid.partitions.*)"
    )
