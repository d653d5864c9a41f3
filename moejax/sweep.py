"""Main job: ``python -m moejax.sweep +grid=frontier``.

Every MoE model of the grid and its κ-matched dense baselines, on every hardware, cluster size
and context, each at its best feasible partition (searched on the device), written as one
labelled netCDF dataset (``sweep.nc`` in the Hydra run directory, or ``out=PATH``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import hydra
import jax
import numpy as np
import xarray as xr
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import __version__, distributed
from .cli import run_command
from .analysis.qs import QS_VARIABLES, qs_columns
from .baseline import dense_baseline
from .catalogue import HARDWARE_FIELDS, load_hardware, load_model
from .config import register, validate_grid
from .dataset import assemble, completed_chunks, write_part
from .grid import GridInputs, PartitionSpace, evaluate_chunks, local_devices, n_chunks, partition_table, stack
from .specs import Accounting, SpecError

register()


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated grid: kernel inputs plus how kernel rows map onto dataset coordinates."""

    inputs: GridInputs
    row_map: np.ndarray  # [model, variant, kappa] -> kernel row
    baseline_exists: np.ndarray  # [model, kappa]
    coords: dict
    accounting: Accounting
    batch: float


def build_plan(grid, keep_partitions: bool) -> SweepPlan:
    """Load the catalogue entries and baselines a grid names; errors are one-line ``SpecError``s."""
    dtypes = dict(grid.dtypes)
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
    hardware, hw_names = design_space([load_hardware(name) for name in grid.hardware], list(grid.hardware),
                                      grid.get("hardware_space"))
    num_gpus = [int(n) for n in grid.num_gpus]
    table, mask = partition_table(num_gpus, PartitionSpace(**{k: tuple(v) for k, v in grid.partitions.items()}))
    contexts = np.array([float(c) for c in grid.contexts])
    inputs = GridInputs(stack(rows), stack(hardware), table, mask, contexts)
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
    acc = Accounting(**dict(grid.accounting))
    batch = 0.0 if grid.batch == "bmax" else float(grid.batch)
    return SweepPlan(inputs, row_map, exists, coords, acc, batch)


SPACE_FIELDS = {"hbm_bw": ("hbm_bw",), "hbm_bytes": ("hbm_bytes",), "flops": ("flops_bf16", "flops_fp8"),
                "intra_bw": ("intra_bw",), "inter_bw": ("inter_bw",), "intra_latency": ("intra_latency",),
                "inter_latency": ("inter_latency",)}


def design_space(hardware: list, names: list[str], space) -> tuple[list, list[str]]:
    """Every catalogue accelerator crossed with the ``grid.hardware_space`` multipliers (and
    absolute ``island_size`` values): a design space over continuous hardware parameters.
    Without a space, the catalogue entries as they are. Names record the multipliers."""
    if not space:
        return hardware, names
    axes = {k: list(v) for k, v in space.items()}
    for field, values in axes.items():
        if field not in SPACE_FIELDS and field != "island_size":
            raise SpecError(f"grid.hardware_space.{field} is not a known field: allowed {', '.join([*SPACE_FIELDS, 'island_size'])}")
        if not values or any(not isinstance(v, int | float) or v <= 0 for v in values):
            raise SpecError(f"grid.hardware_space.{field} = {values!r} is invalid: a non-empty list of positive numbers")
    out, labels = [], []
    for hw, name in zip(hardware, names):
        for combo in itertools.product(*axes.values()):
            changes, tags = {}, []
            for field, value in zip(axes, combo):
                if field == "island_size":
                    changes["island_size"] = float(value)
                    tags.append(f"island={value:g}")
                    continue
                for leaf in SPACE_FIELDS[field]:
                    changes[leaf] = getattr(hw, leaf) * value
                tags.append(f"{field}x{value:g}")
            out.append(dataclasses.replace(hw, **changes))
            labels.append("|".join([name, *tags]))
    return out, labels


def _check_partition_space(space, names, models) -> None:
    """Each degree list of the search space must hold a value that splits every model (others are
    masked per model by the search)."""
    rules = (("tp", "n_heads", "heads"), ("ep", "n_experts", "experts"), ("pp", "n_layers", "layers"))
    for field, attr, what in rules:
        for name, m in zip(names, models):
            count = float(getattr(m, attr))
            if not any(count % degree == 0 for degree in space[field]):
                raise SpecError(f"grid.partitions.{field} = {list(space[field])} is invalid: none divides the "
                                f"{count:g} {what} of {name}")


def _mask_missing_baselines(plan: SweepPlan, axis: str, positions: slice, results: dict) -> None:
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
            else:
                values[local] = np.nan


def science_config(cfg: DictConfig) -> dict:
    """The part of the config that determines the numbers (hashed for resume, stored in attrs)."""
    return {"grid": OmegaConf.to_container(cfg.grid, resolve=True), "precision": cfg.precision,
            "keep_partitions": cfg.keep_partitions, "max_chunk_evaluations": cfg.max_chunk_evaluations,
            "sensitivities": cfg.sensitivities,
            "moejax_version": __version__}


def resolved_specs(plan: SweepPlan) -> str:
    """The numbers the catalogue names resolved to (model rows incl. baselines, hardware), as
    JSON: stored in the dataset and hashed, so an edited catalogue never resumes stale parts."""
    leaves = lambda spec: {k: np.asarray(v).tolist() for k, v in vars(spec).items()}  # noqa: E731
    return json.dumps({"rows": leaves(plan.inputs.rows), "hardware": leaves(plan.inputs.hardware)}, sort_keys=True)


def _code_digest() -> str:
    """Hash of the package's source: parts computed by other code are never reused."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def run(cfg: DictConfig, out: Path) -> Path | None:
    """Evaluate the grid chunk by chunk (resuming from completed parts) and write ``out``; with
    several processes each evaluates its share and process 0 writes ``out`` (others return None)."""
    if cfg.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    validate_grid(cfg.grid, cfg.precision)
    plan = build_plan(cfg.grid, cfg.keep_partitions)
    science = science_config(cfg)
    text = OmegaConf.to_yaml(OmegaConf.create(science))
    specs = resolved_specs(plan)
    devices = local_devices()  # whole chunks per device: the chunk layout, and so the parts, do not depend on it
    digest = hashlib.sha256((text + specs + _code_digest()).encode()).hexdigest()[:16]
    pid, n_proc = jax.process_index(), jax.process_count()  # joined in grid_job, before any JAX use
    if n_proc > 1:
        distributed.check_same_config(digest)
    parts_dir = Path(cfg.parts_dir) / digest
    total = n_chunks(plan.inputs, cfg.max_chunk_evaluations)
    mine = {c for c in range(total) if c % n_proc == pid}
    done = completed_chunks(parts_dir, owned=mine) | set(range(total)) - mine
    per_chunk = plan.inputs.n_partitions * int(np.prod(list(plan.inputs.shape.values()))) / total
    show = cfg.progress is True or (cfg.progress == "auto" and total - len(done) > 1 and sys.stderr.isatty())
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    start = time.perf_counter()
    with tqdm(total=total, initial=len(done), unit="chunk", disable=not show, file=sys.stderr) as bar:
        for cid, axis, positions, results in evaluate_chunks(plan.inputs, plan.batch, plan.accounting, cfg.keep_partitions,
                                                             cfg.max_chunk_evaluations, dtype, skip=done,
                                                             sensitivities=cfg.sensitivities, devices=devices):
            _mask_missing_baselines(plan, axis, positions, results)
            write_part(parts_dir, cid, axis, positions, results)
            bar.update(1)
            bar.set_postfix_str(f"{per_chunk * (bar.n - len(done)) / (time.perf_counter() - start):.3g} evaluations/s")
    if n_proc > 1:
        distributed.barrier("moejax: all parts written")
        if pid != 0:
            return None  # process 0 assembles the dataset
    acc = plan.accounting
    attrs = {
        "title": f"moejax decode sweep: grid {cfg.grid.name}",
        "Conventions": "CF-1.10",
        "source": f"moejax {__version__} (jax {jax.__version__})",
        "config": text,
        "resolved_specs": specs,
        "grid": cfg.grid.name,
        "expert_traffic": acc.expert_traffic,
        "roofline": acc.roofline,
        "integer_batch": int(acc.integer_batch),
        "dense_baseline_family": cfg.grid.baseline,
        "batch_policy": str(cfg.grid.batch),
        "partition_search": "all candidates kept" if cfg.keep_partitions else "best feasible partition by throughput_per_gpu",
        "precision": cfg.precision,
        "comment": "MoE rows (variant=moe) do not depend on kappa and are repeated along it.",
    }
    baseline = ("baseline_exists", ("model", "kappa"), plan.baseline_exists.astype(np.int8))
    hardware_numbers = [(f"hw_{f}", ("hardware",), np.asarray(getattr(plan.inputs.hardware, f)))
                        for f in HARDWARE_FIELDS]  # each accelerator's numbers, design spaces included
    assemble(out, parts_dir, plan.coords, plan.row_map, attrs, "f8" if dtype == np.float64 else "f4",
             plan.inputs.partitions if cfg.keep_partitions else None, extra=[baseline, *hardware_numbers],
             sensitivities=cfg.sensitivities, derive=None if cfg.keep_partitions else _qs_writer(plan, _breakeven(cfg)))
    shutil.rmtree(parts_dir)
    return out


def _breakeven(cfg: DictConfig) -> dict | None:
    """κ* arrays (model, hardware, num_gpus, context) when ``breakeven.include`` asks for them."""
    if not cfg.breakeven.include:
        return None
    from .breakeven import solve

    return solve(cfg)[0]


def _qs_writer(plan: SweepPlan, kappa_star: dict | None = None):
    """Add the qs paper's Table 3 columns (see ``moejax.analysis.qs``) and, if given, the κ*
    variables (see ``moejax.breakeven``) to the open dataset."""
    def derive(nc) -> None:
        if kappa_star is not None:
            from .breakeven import GRID4, OUTPUTS, to_dataset

            ds = to_dataset(kappa_star, {}, {})
            for name in OUTPUTS:
                var = nc.createVariable(name, ds[name].dtype, GRID4, zlib=True, complevel=4)
                var[:] = ds[name].values
                var.setncatts({k: v for k, v in ds[name].attrs.items()})
        moe_rows = plan.inputs.rows
        moe = plan.row_map[:, 0, 0]
        cols = qs_columns(nc["batch"][:].filled(np.nan), nc["throughput_per_gpu"][:].filled(np.nan),
                          nc["feasible"][:].filled(0), moe_rows.n_experts[moe], moe_rows.top_k[moe], nc["kappa"][:])
        for name, (dims, units, long_name) in QS_VARIABLES.items():
            values = np.asarray(cols[name], dtype=nc["throughput_per_gpu"].dtype)
            var = nc.createVariable(name, values.dtype, dims, zlib=True, complevel=4, fill_value=np.nan)
            var[:] = values
            var.setncatts({"units": units, "long_name": long_name})
    return derive


def summary(path: Path) -> str:
    """Per model: the MoE's best throughput per GPU and where; at the shortest and longest context,
    the dense/MoE throughput ratio (κ nearest 5) on the hardware and cluster where the MoE does
    best at that context, and what bounds the MoE there."""
    with xr.open_dataset(path) as ds:
        kappa = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - 5.0))])
        tput = ds.throughput_per_gpu.sel(kappa=kappa)
        meanings = ds.bound.attrs["flag_meanings"].split()
        short, long = ds.context.values[0], ds.context.values[-1]
        lines = [f"dense/MoE throughput ratio at kappa={kappa:g}, on the hardware x GPUs where the MoE does best at that context",
                 f"{'model':<16} {'best MoE tok/s/GPU':>18}  {'at':<24} {f'{int(short)} tok':>26} {f'{int(long)} tok':>26}"]
        for model in ds.model.values:
            moe = tput.sel(model=model, variant="moe")
            if not bool((moe > 0).any()):
                lines.append(f"{model:<16} {'infeasible everywhere':>18}")
                continue
            best = moe.where(moe == moe.max(), drop=True)
            at = f"{best.hardware.values[0]} x{best.num_gpus.values[0]} @ {int(best.context.values[0])}"
            cells = []
            for c in (short, long):
                m = moe.sel(context=c).stack(place=("hardware", "num_gpus"))
                if not bool((m > 0).any()):
                    cells.append("MoE infeasible")
                    continue
                place = m.place.values[int(np.argmax(m.values))]
                where = dict(zip(("hardware", "num_gpus"), place), context=c)
                dense = float(tput.sel(model=model, variant="dense", **where))
                bound = meanings[int(ds.bound.sel(model=model, variant="moe", kappa=kappa, **where))]
                cells.append(f"{dense / float(m.max()):.2f}x {place[0]}/{place[1]} {bound}")
            lines.append(f"{model:<16} {float(moe.max()):>18.4g}  {at:<24} {cells[0]:>26} {cells[1]:>26}")
        if not bool(ds.feasible.any()):
            lines.append("warning: no point of this grid is feasible")
    return "\n".join(lines)


def _resolve_overrides(cfg: DictConfig) -> None:
    """``model=NAME`` / ``hardware=NAME`` (Hydra groups over the catalogue) replace the grid's lists."""
    choices = HydraConfig.get().runtime.choices
    for group, field in (("model", "models"), ("hardware", "hardware")):
        if choices.get(group):
            cfg.grid[field] = [choices[group]]


def grid_job(cfg: DictConfig, filename: str, job) -> None:
    """The shell every grid CLI shares: require a grid, apply ``model=``/``hardware=`` choices,
    run ``job(cfg, out) -> report``, and turn a ``SpecError`` into one line on stderr, exit code 2,
    and no files left behind."""
    def grid_run(run_dir: Path) -> str:
        if cfg.grid is None:
            from .catalogue import CONF_DIR

            grids = sorted(p.stem for p in (CONF_DIR / "grid").glob("*.yaml"))
            raise SpecError(f"grid is missing: choose one with +grid=NAME, available {', '.join(grids)}")
        _resolve_overrides(cfg)
        if cfg.distributed is not None:
            distributed.initialize(cfg.distributed)  # must precede every other use of JAX
        return job(cfg, Path(cfg.out) if cfg.out else run_dir / filename)
    run_command(grid_run, cfg.compilation_cache)


def _sweep_job(cfg: DictConfig, out: Path) -> str:
    if run(cfg, out) is None:
        return f"process {jax.process_index()}: parts written; process 0 writes {out}"
    return f"wrote {out}" + (f"\n{summary(out)}" if cfg.summary else "")


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    grid_job(cfg, "sweep.nc", _sweep_job)


if __name__ == "__main__":
    main()
