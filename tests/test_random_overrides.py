"""Random grid overrides on the real main job (hypothesis): every run either succeeds with a valid
dataset of the requested shape, or exits 2 with exactly one ``error:`` line and writes no file.

Each example is the sweep command run in-process (``cli_runs.run_main``: Hydra, the checks, the
computation and the netCDF write as ``python -m moejax.sweep`` runs them, without an interpreter
start per example; real processes are run by tests/test_sweep.py and tests/test_robust_runs.py) on a
one-point-sized grid, so the values mix valid choices with the mistakes users make (unknown names,
zero or negative degrees, fractional or huge counts, wrong types, dense models given as the MoE)."""

import contextlib
import math

import numpy as np
import xarray as xr
from cli_runs import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = {
    "grid.models": st.sampled_from(
        [
            "[mixtral-8x7b]",
            "[mixtral-8x7b,qwen3-235b-a22b]",
            "[llama-3-70b]",
            "[nope]",
            "[]",
            "mixtral-8x7b",
            "[mixtral-8x7b,mixtral-8x7b]",
        ]
    ),
    "grid.hardware": st.sampled_from(["[h100-sxm]", "[b200,mi300x]", "[tpu-v6e]", "[gb200-nvl72]", "[nope]", "[]"]),
    "grid.num_gpus": st.sampled_from(["[8]", "[8,16]", "[0]", "[-8]", "[3]", "[1099511627776]", "[abc]", "[8.5]"]),
    "grid.contexts": st.sampled_from(["[1024]", "[2048,131072]", "[0]", "[-5]", "[1e30]", "[nan]", "[inf]", "[x]"]),
    "grid.kappas": st.sampled_from(["[5]", "[1,8]", "[0]", "[-2]", "[nan]", "[5,5]"]),
    "grid.batch": st.sampled_from(["bmax", "1", "64", "0", "-3", "2.5", "lots"]),
    "grid.partitions.tp": st.sampled_from(["[1,8]", "[8]", "[0]", "[]", "[3]", "[-1]"]),
    "grid.partitions.ep": st.sampled_from(["[1,8]", "[8]", "[0]", "[2.5]"]),
    "grid.dtypes.kv": st.sampled_from(["bf16", "fp8", "nvfp4", "fp7"]),
    "grid.accounting.mode": st.sampled_from(["realistic", "sol", "optimistic"]),
    "precision": st.sampled_from(["float32", "float64", "float16"]),
    "max_chunk_evaluations": st.sampled_from(["16777216", "4096", "0", "-1"]),
}

# the narrow partition space every example starts from: few candidates, fast compiles
BASE = [
    "+grid=quick",
    "grid.models=[mixtral-8x7b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[4096]",
    "grid.kappas=[5]",
    "grid.partitions.pp=[1]",
    "grid.partitions.dp_attn=[1]",
    "grid.partitions.kvp=[1]",
    "grid.partitions.dense_tp=[8]",
    "summary=false",
    "progress=false",
    "compilation_cache=null",  # in-process: the suite's cache stays the worker's (tests/conftest.py)
]


def _list(text: str) -> list[str]:
    return [v for v in text.strip("[]").split(",") if v]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})
    )
)
def test_random_overrides_succeed_or_fail_in_one_line(tmp_path_factory, overrides):
    d = tmp_path_factory.mktemp("random")
    out = d / "sweep.nc"
    args = [
        *BASE,
        *(f"{k}={v}" for k, v in overrides.items()),
        f"out={out}",
        f"parts_dir={d / 'parts'}",
        f"hydra.run.dir={d / 'run'}",
    ]
    with contextlib.chdir(d):
        code, _, err = run_main("moejax.sweep", args)
    if code != 0:
        lines = err.strip().splitlines()
        assert code == 2, (args, code, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err[-2000:])
        assert not any(p.is_file() for p in d.rglob("*")), (args, [str(p) for p in d.rglob("*")])
        return
    assert err.strip() == "", (args, err[-2000:])
    grid = {
        "grid.models": "[mixtral-8x7b]",
        "grid.hardware": "[h100-sxm]",
        "grid.num_gpus": "[8]",
        "grid.contexts": "[4096]",
        "grid.kappas": "[5]",
        **overrides,
    }
    with xr.open_dataset(out) as ds:
        assert list(ds.model.values) == _list(grid["grid.models"])
        assert list(ds.hardware.values) == _list(grid["grid.hardware"])
        assert ds.sizes["num_gpus"] == len(_list(grid["grid.num_gpus"]))
        assert ds.sizes["context"] == len(_list(grid["grid.contexts"]))
        assert ds.sizes["kappa"] == len(_list(grid["grid.kappas"]))
        tput, feasible = ds.throughput_per_gpu.values, ds.feasible.values.astype(bool)
        assert np.isfinite(tput).all() and (tput[feasible] > 0).all() and (tput[~feasible] == 0).all()
        step = ds.step_time.values[feasible]
        assert np.isfinite(step).all() and (step > 0).all()
        assert all(math.isfinite(float(v)) for v in ds.context.values)
