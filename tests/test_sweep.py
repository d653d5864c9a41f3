"""The main job for real: Hydra runs, netCDF on disk, SIGKILL and resume. The reference dataset
and the killed run are their own processes; checks of what a run writes run the command in this
process (``cli_runs.run_main``: the same Hydra main, its traced kernels reused, ~1 s a run instead
of ~10 s of interpreter start and tracing), and compare with the subprocess's dataset."""

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from cli_runs import forked, run_main

from moejax import Partition, Workload, decode_point, dense_baseline, load_hardware, load_model
from moejax.catalogue import load_accounting
from moejax.engine.variables import REGISTRY, STEP_COSTS, STEP_COSTS_NOT_STORED
from moejax.physics.cost import StepCosts

ROOT = Path(__file__).resolve().parent.parent
TINY = ["+grid=quick", "summary=false"]


def sweep(*args, cwd=None, check=True, **kw):
    proc = subprocess.run(
        [sys.executable, "-m", "moejax.sweep", *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=300, **kw
    )
    if check and proc.returncode:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def sweep_here(*args, hydra_dir, check=True):
    """``python -m moejax.sweep *args`` run in this process: ``subprocess.CompletedProcess``-like."""
    code, out, err = run_main("moejax.sweep", list(args), hydra_dir=hydra_dir)
    if check and code:
        raise AssertionError(err[-3000:])
    return subprocess.CompletedProcess(["moejax.sweep", *args], code, out, err)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "sweep.nc"
    proc = sweep("+grid=quick", f"out={out}", f"parts_dir={out.parent / 'parts'}")
    return out, proc


def test_quick_grid_writes_a_labelled_dataset(quick):
    out, proc = quick
    assert f"wrote {out}" in proc.stdout and "deepseek-v3" in proc.stdout  # path and summary
    with xr.open_dataset(out) as ds:
        assert dict(ds.sizes) == {"model": 2, "variant": 2, "kappa": 2, "hardware": 2, "num_gpus": 2, "context": 3}
        assert list(ds.model.values) == ["deepseek-v3", "mixtral-8x22b"]
        for name in (
            "throughput_per_gpu",
            "step_time",
            "batch",
            "b_max",
            "feasible",
            "t_compute",
            "t_hbm",
            "t_comm_exposed",
            "reuse",
            "bound",
            "tp",
            "ep",
            "pp",
            "dp",
            "dp_attn",
            "kvp",
            "kv_mode",
        ):
            var = ds[name]
            assert "long_name" in var.attrs and ("units" in var.attrs or "flag_meanings" in var.attrs), name
        assert ds.bound.attrs["flag_meanings"] == "compute hbm communication infeasible"
        assert ds.attrs["expert_traffic"] == "physical" and ds.attrs["source"].startswith("moejax")
        assert yaml.safe_load(ds.attrs["config"])["grid"]["name"] == "quick"  # resolved config round-trips
        assert bool(ds.feasible.any())
        assert not np.isnan(ds.throughput_per_gpu.values).any()
        # MoE rows do not depend on kappa
        moe = ds.throughput_per_gpu.sel(variant="moe")
        np.testing.assert_array_equal(moe.isel(kappa=0).values, moe.isel(kappa=1).values)


def test_every_step_costs_field_is_in_the_dataset(quick):
    """A StepCosts field the sweep computes is stored, with its registered dims, dtype and attributes;
    only the fields engine/variables.STEP_COSTS_NOT_STORED names (with the reason) may be left out.
    And every data variable of the dataset is a registered one."""
    out, _ = quick
    # StepCosts fields deliberately not stored: none today (see STEP_COSTS_NOT_STORED for the reasons, if any)
    not_stored = set(STEP_COSTS_NOT_STORED)
    with xr.open_dataset(out) as ds:
        missing = {f.name for f in dataclasses.fields(StepCosts)} - not_stored - set(ds.data_vars)
        assert not missing, f"StepCosts fields computed but not stored in sweep.nc: {sorted(missing)}"
        for name, var in STEP_COSTS.items():
            assert ds[name].dims == var.dims and str(ds[name].dtype) == np.dtype(var.numpy_dtype("f4")).name, name
            assert set(ds[name].attrs) == set(var.attrs()), name
            for key, value in var.attrs().items():
                np.testing.assert_array_equal(ds[name].attrs[key], value)
        unregistered = set(ds.data_vars) - set(REGISTRY)
        assert not unregistered, f"dataset variables not declared in engine/variables.py: {sorted(unregistered)}"


def test_dataset_matches_the_kernel_at_the_winning_partition(quick):
    """Each stored point equals decode_point at its stored winning partition (float32 run vs x64)."""
    out, _ = quick
    with xr.open_dataset(out) as ds:
        for sel in (
            {"model": "deepseek-v3", "variant": "dense", "kappa": 5.0, "hardware": "b200", "num_gpus": 16, "context": 8192.0},
            {"model": "mixtral-8x22b", "variant": "moe", "kappa": 2.0, "hardware": "h100-sxm", "num_gpus": 8, "context": 65536.0},
        ):
            pt = ds.sel(sel)
            assert int(pt.feasible) == 1
            m = load_model(sel["model"], weights="fp8")
            if sel["variant"] == "dense":
                m = dense_baseline(m, sel["kappa"])
            p = Partition(
                **{
                    f: float(pt[f])
                    for f in ("tp", "ep", "pp", "dp", "dp_attn", "kvp", "kv_mode", "dense_tp", "redundant_experts")
                }
            )
            r = decode_point(
                m, load_hardware(sel["hardware"]), p, Workload(context=sel["context"]), load_accounting(ds.accounting_mode)
            )
            for f in ("throughput_per_gpu", "step_time", "b_max", "t_hbm"):
                np.testing.assert_allclose(float(pt[f]), float(getattr(r, f)), rtol=2e-5, err_msg=f)


def test_winner_is_the_best_of_all_kept_candidates(quick, tmp_path):
    out, _ = quick
    full = tmp_path / "all.nc"
    proc = sweep_here(
        "+grid=quick", "keep_partitions=true", f"out={full}", f"parts_dir={tmp_path / 'parts'}", hydra_dir=tmp_path / "run"
    )  # summary on (README)
    assert "best MoE configuration" in proc.stdout and "each point is shown at its best feasible one" in proc.stdout
    with xr.open_dataset(out) as best, xr.open_dataset(full) as every:
        assert "partition" in every.dims and "partition_tp" in every
        np.testing.assert_allclose(every.throughput_per_gpu.max("partition").values, best.throughput_per_gpu.values, rtol=1e-6)


def test_two_runs_are_identical(quick, tmp_path):
    """The fixture's process and a second run here (another process's compiled kernels) write the same file."""
    out, _ = quick
    again = tmp_path / "again.nc"
    sweep_here("+grid=quick", f"out={again}", f"parts_dir={tmp_path / 'parts'}", "summary=false", hydra_dir=tmp_path / "run")
    with xr.open_dataset(out) as a, xr.open_dataset(again) as b:
        assert a.identical(b)


def test_killed_run_resumes_to_the_same_dataset(tmp_path):
    """SIGKILL a real run once some chunks are on disk; the rerun computes only the rest. One chunk
    per context: 30 chunks, killed at 5 or more, leave a margin of many chunks (each ~0.1 s) for
    the kill to land mid-run while the resume and the clean run stay short."""
    n = 30
    contexts = "[" + ",".join(str(1024 + 64 * i) for i in range(n)) + "]"
    args = ["+grid=quick", f"grid.contexts={contexts}", "max_chunk_evaluations=1", "summary=false"]
    parts, out = tmp_path / "parts", tmp_path / "resumed.nc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moejax.sweep", *args, f"out={out}", f"parts_dir={parts}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*/part-*.nc"))) < 5:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*/part-*.nc")))
    assert 5 <= done < n and not out.exists(), done  # killed mid-way
    sweep_here(*args, f"out={out}", f"parts_dir={parts}", hydra_dir=tmp_path / "resume")  # resumes the dead process's parts
    assert not list(parts.glob("*/part-*.nc"))  # parts are cleared once the dataset is written
    clean = tmp_path / "clean.nc"
    sweep_here(*args, f"out={clean}", f"parts_dir={tmp_path / 'other'}", hydra_dir=tmp_path / "clean")
    with xr.open_dataset(out) as a, xr.open_dataset(clean) as b:
        assert a.identical(b)


# One case per way the CLI refuses: Hydra (unknown grid), grid_job (no grid), validate_grid (a name),
# build_plan (a partition space); each must exit with the message and leave no file or run directory.
BAD = [
    (["+grid=nope"], "grid = 'nope' is invalid: allowed design-space, frontier, modern, qs-paper, quick"),
    (["+grid=quick", "grid.models=[deepseek-v9]"], "grid.models = 'deepseek-v9' is invalid: allowed deepseek-r1, deepseek-v3,"),
    (["+grid=quick", "grid.partitions.tp=[5]"], "grid.partitions.tp = [5] is invalid: none divides the 128 heads of deepseek-v3"),
    ([], "grid is missing: choose one with +grid=NAME, available design-space, frontier, modern, qs-paper, quick"),
]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Each case of BAD run for real (``python -m moejax.sweep``, its own process, one interpreter start)."""
    dirs = [tmp_path_factory.mktemp("bad") for _ in BAD]
    procs = forked(
        "moejax.sweep", [[*args, f"out={d / 'x.nc'}", f"hydra.run.dir={d / 'run'}"] for d, (args, _) in zip(dirs, BAD)]
    )
    return {tuple(args): (proc, d) for (args, _), proc, d in zip(BAD, procs, dirs, strict=True)}


@pytest.mark.parametrize("args,expected", BAD)
def test_bad_input_fails_cleanly(bad_runs, args, expected):
    proc, tmp_path = bad_runs[tuple(args)]
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "x.nc").exists() and not (tmp_path / "run").exists()


# The same checks (SweepConfig.validate at the boundary, then build_plan in engine.run.run, before computing) on more
# values, in-process: the CLI's path from these SpecErrors to its message is the one tested above.
@pytest.mark.parametrize(
    "args,expected",
    [
        (["grid.hardware=[h1000]"], "grid.hardware = 'h1000' is invalid: allowed a100-sxm, b200"),
        (["grid.contexts=[]"], "grid.contexts = [] is invalid"),
        (["grid.kappas=[-1]"], "grid.kappas = -1.0 is invalid"),
        (
            ["grid.partitions.tp=[16]", "grid.num_gpus=[8]"],
            "num_gpus = 8 is invalid: no partition in the search space divides it",
        ),
        (["precision=float16"], "precision = 'float16' is invalid"),
    ],
)
def test_bad_grid_values_are_refused_before_computing(args, expected):
    from hydra import compose, initialize_config_dir

    from moejax.engine.plan import build_plan
    from moejax.physics.specs import SpecError
    from moejax.schema import register, sweep_config

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", ["+grid=quick", *args])
    with pytest.raises(SpecError) as e:
        config = sweep_config(cfg)
        build_plan(config.grid, config.keep_partitions)
    assert expected in str(e.value), str(e.value)


def test_bad_catalogue_values_name_the_field(tmp_path):
    hw = yaml.safe_load((ROOT / "conf/hardware/h100-sxm.yaml").read_text())
    hw["hbm_bw"]["value"] = -3.35e12
    (tmp_path / "neg.yaml").write_text(yaml.safe_dump(hw))
    model = yaml.safe_load((ROOT / "conf/model/mixtral-8x22b.yaml").read_text())
    model["architecture"]["top_k"] = 9
    (tmp_path / "topk.yaml").write_text(yaml.safe_dump(model))
    for override, expected in (
        (f"grid.hardware=[{tmp_path / 'neg.yaml'}]", "HardwareSpec.hbm_bw = -3350000000000.0 is invalid"),
        (f"grid.models=[{tmp_path / 'topk.yaml'}]", "ModelSpec.top_k = 9.0 is invalid"),
    ):
        proc = sweep_here("+grid=quick", override, f"out={tmp_path / 'x.nc'}", hydra_dir=tmp_path / "run", check=False)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.nc").exists()


def test_no_feasible_point_gives_a_valid_dataset_and_a_warning(tmp_path):
    out = tmp_path / "none.nc"
    proc = sweep_here(
        "+grid=quick",
        "grid.models=[gpt-4-rumoured]",
        "grid.kappas=[5,8]",
        "grid.hardware=[h100-sxm]",
        "grid.num_gpus=[8]",
        f"out={out}",
        f"parts_dir={tmp_path / 'parts'}",
        hydra_dir=tmp_path / "run",
    )
    assert "warning: no point of this grid is feasible" in proc.stdout
    with xr.open_dataset(out) as ds:
        assert not bool(ds.feasible.any()) and (ds.bound == 3).all()
        assert (ds.throughput_per_gpu == 0).all()


def test_multirun_over_catalogue_hardware(tmp_path):
    proc = sweep(
        "-m",
        "+grid=quick",
        "hardware=h100-sxm,b200",
        "summary=false",
        f"hydra.sweep.dir={tmp_path}",
        f"parts_dir={tmp_path / 'parts'}",
    )
    files = sorted(tmp_path.glob("*/sweep.nc"))
    assert len(files) == 2, proc.stdout
    hw = {str(xr.open_dataset(f).hardware.values[0]) for f in files}
    assert hw == {"h100-sxm", "b200"}


def test_epoch_cube_root_baselines_in_a_sweep(tmp_path):
    out = tmp_path / "e.nc"
    sweep_here(
        "+grid=quick",
        "grid.baseline=epoch-cube-root",
        f"out={out}",
        f"parts_dir={tmp_path / 'parts'}",
        "summary=false",
        hydra_dir=tmp_path / "run",
    )
    with xr.open_dataset(out) as ds:
        assert bool(ds.baseline_exists.all())
        assert bool(ds.feasible.sel(variant="dense").any())
        assert ds.attrs["dense_baseline_family"] == "epoch-cube-root"
