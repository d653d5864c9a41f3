"""Bad input anywhere: one ``error: ...`` line on stderr naming the field, the value and what is
allowed, exit code 2, no file written (issue 11, items 5, 6 and 9). Command-line cases run the real
``python -m moejax.sweep`` on a one-point grid; API and catalogue cases run in-process."""

import functools
import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from cli_runs import assert_refused, sweep, sweeps

import moejax
from moejax.catalogue import load_accounting
from moejax.physics.specs import SpecError

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x7b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[1024]",
    "grid.kappas=[5]",
    "grid.partitions.tp=[1,8]",
    "grid.partitions.ep=[1,8]",
    "grid.partitions.pp=[1]",
    "grid.partitions.dp_attn=[1]",
    "grid.partitions.kvp=[1]",
    "summary=false",
    "compilation_cache=null",
]


sweep = functools.partial(sweep, grid=TINY)


def inputs(tmp_path) -> Path:
    d = tmp_path / "in"
    (d / "model").mkdir(parents=True, exist_ok=True)
    (d / "hardware").mkdir(exist_ok=True)
    return d


BAD_OVERRIDES = [
    (["grid.partitions.tp=[0]"], ["grid.partitions.tp = 0 is invalid", "positive integer"]),  # was ZeroDivisionError
    (["grid.num_gpus=abc"], ["grid.num_gpus = 'abc' is invalid", "list of integers"]),  # was Hydra's multi-line report
    (["grid.num_gpus=[a]"], ["grid.num_gpus[0] = 'a' is invalid", "integer"]),
    (["precision=1"], ["precision = '1' is invalid", "float32, float64"]),
    (["model=nope"], ["model = 'nope' is invalid", "mixtral-8x7b"]),
    (["grid.foo=1"], ["grid.foo is not a known field", "num_gpus"]),
    (["grid.models=[llama-3-70b]"], ["grid.models = 'llama-3-70b' is invalid", "dense model", "deepseek-v3"]),  # was accepted
    (["grid.hardware_space.foo=[2]"], ["grid.hardware_space.foo is not a known field", "hbm_bw"]),
    (["grid.hardware_space.hbm_bw=[-1]"], ["grid.hardware_space.hbm_bw = [-1.0] is invalid", "positive"]),
]


@pytest.fixture(scope="module")
def bad_override_runs(tmp_path_factory):
    """Each case of BAD_OVERRIDES run for real, in its own directory and process (one interpreter start)."""
    dirs = [tmp_path_factory.mktemp("override") for _ in BAD_OVERRIDES]
    procs = sweeps([(d, args, ()) for d, (args, _) in zip(dirs, BAD_OVERRIDES)], grid=TINY)
    return {tuple(args): (proc, d) for (args, _), proc, d in zip(BAD_OVERRIDES, procs, dirs, strict=True)}


@pytest.mark.parametrize("args,fragments", BAD_OVERRIDES)
def test_bad_override_is_one_line(args, fragments, bad_override_runs):
    proc, tmp_path = bad_override_runs[tuple(args)]
    assert_refused(proc, tmp_path, *fragments)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["grid.num_gpus=[1099511627776]"], ["grid.num_gpus = 1099511627776 is invalid", "2147483647"]),  # was OverflowError
        (["grid.batch=2.5"], ["grid.batch = 2.5 is invalid", "integer"]),  # was accepted
        (["grid.batch=0"], ["grid.batch = 0 is invalid"]),
    ],
)
def test_bad_grid_value_in_process(args, fragments):
    """More values ``SweepConfig.validate`` refuses (at the command boundary, before computing), on
    the config Hydra composes from the same overrides; the CLI's path from this SpecError to one
    line and exit 2 is covered by the command-line cases above (``grid.partitions.tp=[0]``, ...)."""
    from hydra import compose, initialize_config_dir

    from moejax.schema import register, sweep_config

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", [*TINY, *args])
    with pytest.raises(SpecError) as e:
        sweep_config(cfg)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


HF_TEXTS = ["", '{"model_type": "mixtral", "num_hidden_layers": 3']  # empty, truncated


@pytest.fixture(scope="module")
def command_line_runs(tmp_path_factory):
    """The command-line cases below, each run for real in its own directory and process, from one
    interpreter start (``cli_runs.sweeps``): name -> (process, directory)."""
    cases = {}  # name -> (directory, args, options)

    def case(name, args, config_dir=False) -> Path:
        """A directory for the case; with ``config_dir`` its ``in/`` (``inputs``) is ``--config-dir``."""
        d = tmp_path_factory.mktemp(name)
        cases[name] = (d, args, ["--config-dir", str(inputs(d))] if config_dir else [])
        return inputs(d)

    case("unknown_grid", ["+grid=nope"])
    case("schema_grid", ["+grid=grid_schema"])
    case("grid_without_plus", ["grid=quick"])
    d = case("malformed_model", [*TINY, "model=broken"], config_dir=True)
    (d / "model" / "broken.yaml").write_text("description: cut short\narchitecture: {n_layers: [61\n")
    for i, text in enumerate(HF_TEXTS):
        path = inputs(tmp_path_factory.mktemp(f"hf{i}")) / "config.json"
        path.write_text(text)
        cases[f"hf{i}"] = (path.parent.parent, [*TINY, f"grid.models=[{path}]"], [])
    case("size", [*TINY, "grid.batches=[1,2]", "grid.interactivity.count=300000000"])
    d = case("grid_file", ["+grid=g", "summary=false"], config_dir=True)
    (d / "grid").mkdir()
    (d / "grid" / "g.yaml").write_text(
        "defaults: [grid_schema]\nname: g\nmodels: [mixtral-8x7b]\nhardware: [h100-sxm]\n"
        "num_gpus: [8]\ncontexts: [1024]\ndtypes: {kv: []}\n"
    )
    d = case("user_config_dir", [*TINY, "model=my-moe", "hardware=my-gpu", "grid.hardware_space.hbm_bw=[1,2]"], config_dir=True)
    shutil.copy(ROOT / "conf/model/mixtral-8x7b.yaml", d / "model/my-moe.yaml")
    shutil.copy(ROOT / "conf/hardware/h100-sxm.yaml", d / "hardware/my-gpu.yaml")
    procs = sweeps(list(cases.values()), grid=[])
    return {name: (proc, d) for (name, (d, _, _)), proc in zip(cases.items(), procs, strict=True)}


def test_unknown_grid_lists_only_real_grids(command_line_runs):
    proc, d = command_line_runs["unknown_grid"]
    line = assert_refused(proc, d, "grid = 'nope' is invalid", "quick", "frontier")
    assert "_schema" not in line  # Hydra's internal grid_schema entry is not a choice
    proc, d = command_line_runs["schema_grid"]
    line = assert_refused(proc, d, "grid = 'grid_schema' is invalid", "quick")
    assert "_schema" not in line.partition("allowed")[2]


def test_grid_without_plus_says_how(command_line_runs):
    assert_refused(*command_line_runs["grid_without_plus"], "grid = 'quick' is invalid", "write +grid=quick")


def test_malformed_model_yaml_names_the_path(command_line_runs):
    proc, d = command_line_runs["malformed_model"]
    # Hydra parses the group file: was a 60-line traceback, exit 1
    assert_refused(proc, d, str(d / "in" / "model" / "broken.yaml"), "not valid YAML")


@pytest.mark.parametrize("case", range(len(HF_TEXTS)), ids=["empty", "truncated"])
def test_empty_or_truncated_hf_config_names_the_path(case, command_line_runs):
    proc, d = command_line_runs[f"hf{case}"]
    assert_refused(proc, d, str(d / "in" / "config.json"), "not valid JSON")


DIST = ["distributed=env", "distributed.timeout_s=2"]


BAD_ENVIRONMENTS = [
    ({"MOEJAX_NUM_PROCESSES": "abc"}, ["distributed.num_processes = 'abc' is invalid", "integer", "MOEJAX_NUM_PROCESSES"]),
    ({"MOEJAX_PROCESS_ID": "first"}, ["distributed.process_id = 'first' is invalid", "MOEJAX_PROCESS_ID"]),
    ({"MOEJAX_NUM_PROCESSES": "[2"}, ["distributed.num_processes = '[2' is invalid", "MOEJAX_NUM_PROCESSES"]),
    ({"MOEJAX_COORDINATOR": "localhost"}, ["distributed.coordinator = 'localhost' is invalid", "host:port"]),
]


@pytest.fixture(scope="module")
def bad_environment_runs(tmp_path_factory):
    """Each case of BAD_ENVIRONMENTS run for real, its own directory, process and environment (one interpreter start)."""
    dirs = [tmp_path_factory.mktemp("environment") for _ in BAD_ENVIRONMENTS]
    envs = [
        {"MOEJAX_COORDINATOR": "127.0.0.1:1", "MOEJAX_NUM_PROCESSES": "2", "MOEJAX_PROCESS_ID": "0", **env}
        for env, _ in BAD_ENVIRONMENTS
    ]
    procs = sweeps([(d, DIST, ()) for d in dirs], grid=TINY, envs=envs)
    return [(proc, d) for proc, d in zip(procs, dirs, strict=True)]


@pytest.mark.parametrize("case", range(len(BAD_ENVIRONMENTS)), ids=[f"env{i}-fragments{i}" for i in range(len(BAD_ENVIRONMENTS))])
def test_non_numeric_environment_is_one_line(case, bad_environment_runs):
    proc, tmp_path = bad_environment_runs[case]
    assert_refused(proc, tmp_path, *BAD_ENVIRONMENTS[case][1])


def test_lone_rank_zero_is_one_line_not_an_abort(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MOEJAX_COORDINATOR": f"127.0.0.1:{port}", "MOEJAX_NUM_PROCESSES": "2", "MOEJAX_PROCESS_ID": "0"}
    proc = sweep(tmp_path, *DIST, env=env, timeout=120)  # was SIGABRT (-6) with a C++ trace after the timeout
    assert_refused(proc, tmp_path, "distributed.num_processes = 2 is invalid", "only 1 of 2 processes", "missing process ids 1")


def test_design_space_dotted_override_and_user_config_dir(command_line_runs):
    """``grid.hardware_space.hbm_bw=[1,2]`` (no ``+``) and a model and an accelerator from ``--config-dir``."""
    proc, d = command_line_runs["user_config_dir"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    bw = moejax.load_hardware("h100-sxm").hbm_bw  # the copied entry's number, read independently
    with xr.open_dataset(d / "run/x.nc") as ds:
        assert list(ds.model.values) == ["my-moe"]
        assert list(ds.hardware.values) == ["my-gpu|hbm_bwx1", "my-gpu|hbm_bwx2"]
        np.testing.assert_allclose(ds.hw_hbm_bw.values, [bw, 2 * bw], rtol=1e-12)
        assert bool(ds.feasible.sel(variant="moe").any())


def test_plus_forms_of_the_design_space_still_work():
    """The documented ``+grid.hardware_space=...`` and YAML forms compose to the same space."""
    from hydra import compose, initialize_config_dir

    from moejax.schema import register

    register()
    spaces = []
    for override in (
        "grid.hardware_space.hbm_bw=[1,2]",
        "+grid.hardware_space.hbm_bw=[1,2]",
        "+grid.hardware_space={hbm_bw:[1,2]}",
    ):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
            spaces.append(dict(compose("config", ["+grid=quick", override]).grid.hardware_space))
    assert spaces[0] == spaces[1] == spaces[2] and spaces[0]["hbm_bw"] == [1.0, 2.0] and spaces[0]["flops"] is None
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        assert list(compose("config", ["+grid=design-space"]).grid.hardware_space.flops) == [0.5, 1, 2, 4]


# --- the API and the catalogue, in-process -------------------------------------------------------

H100 = moejax.load_hardware("h100-sxm")
TP8 = moejax.Partition(tp=8)


@pytest.mark.parametrize("batch", [0, -4, 2.5, float("nan"), True])
def test_api_batch_must_be_none_or_whole_and_positive(batch):
    with pytest.raises(SpecError, match=r"^batch = .* is invalid: must be None \(B_max\) or a whole number >= 1"):
        moejax.decode_step("llama-3-70b", H100, TP8, 8192, batch=batch)
    with pytest.raises(SpecError, match=r"^batch = .* is invalid: must be a whole number >= 1"):
        moejax.prefill_step("llama-3-70b", H100, TP8, 8192, batch=batch)


def test_api_fractional_batch_only_with_continuous_accounting():
    smooth = moejax.Accounting(integer_batch=False)
    a = moejax.decode_step("llama-3-70b", H100, TP8, 8192, batch=2.5, accounting=smooth)
    b = moejax.decode_step("llama-3-70b", H100, TP8, 8192, batch=2, accounting=smooth)
    assert float(a.throughput) > float(b.throughput) > 0
    with pytest.raises(SpecError, match=r"^batch = 0 is invalid: must be None \(B_max\) or a number > 0"):
        moejax.decode_step("llama-3-70b", H100, TP8, 8192, batch=0, accounting=smooth)


@pytest.mark.parametrize("kappa", [float("nan"), float("inf"), 0.0, -1.0])
def test_dense_baseline_refuses_nonsense_kappa(kappa):
    m = moejax.load_model("deepseek-v3")
    for family in ("keep-attention", "epoch-cube-root"):
        with pytest.raises(SpecError, match=r"^dense_baseline: kappa = .* is invalid: must be a finite number > 0"):
            moejax.dense_baseline(m, kappa, family)


def test_grad_through_decode_step_matches_finite_difference():
    """d throughput / d HBM bandwidth through the public API (hardware from a catalogue override),
    and d / d batch (a Python float before: ConcretizationTypeError), against central differences
    (float64; step 1e-6 relative; agreement to 1e-6 relative). Continuous batches, so the batch
    can be perturbed."""
    smooth = load_accounting("realistic", integer_batch=False)

    def tput_bw(bw):
        hw = moejax.load_hardware("h100-sxm", hbm_bw=bw)
        return moejax.decode_step("llama-3-70b", hw, TP8, 8192, batch=8, accounting=smooth).throughput

    def tput_batch(b):
        return moejax.decode_step("llama-3-70b", H100, TP8, 8192, batch=b, accounting=smooth).throughput

    for f, x in ((tput_bw, float(H100.hbm_bw)), (tput_batch, 8.0)):
        g = float(jax.grad(f)(x))
        h = 1e-6 * x
        fd = (float(f(x + h)) - float(f(x - h))) / (2 * h)
        assert g > 0 and g == pytest.approx(fd, rel=1e-6)


def write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_malformed_model_yaml_in_process(tmp_path):
    bad = write(tmp_path, "cut.yaml", "architecture:\n  n_layers: 61\n  d_model: [7168\n")
    with pytest.raises(SpecError, match=rf"^{bad}: is not valid YAML at line \d+, column \d+"):
        moejax.load_model(str(bad))


@pytest.mark.parametrize(
    "change,fragment",
    [
        (("attention: mla", "attention: [mla]"), "architecture.attention = ['mla'] is invalid: allowed mha"),
        (
            ("cross_attention: false", "cross_attention: 'no'"),
            "architecture.cross_attention = 'no' is invalid: must be true or false",
        ),
        (("architecture:", "dtypes: fp8\narchitecture:"), "dtypes = 'fp8' is invalid: must be a mapping"),
    ],
)
def test_wrongly_typed_model_yaml_names_path_field_and_value(change, fragment, tmp_path):
    text = (ROOT / "conf/model/deepseek-v3.yaml").read_text()
    assert change[0] in text
    path = write(tmp_path, "m.yaml", text.replace(change[0], change[1], 1))
    with pytest.raises(SpecError) as e:
        moejax.load_model(str(path))
    assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value)


def test_wrongly_typed_hardware_yaml(tmp_path):
    text = (ROOT / "conf/hardware/h100-sxm.yaml").read_text()
    path = write(tmp_path, "hw.yaml", text + "\nfabric: {value: [mesh], source: test}\n")
    with pytest.raises(SpecError, match=r"fabric = \['mesh'\] is invalid: allowed switched, mesh"):
        moejax.load_hardware(str(path))


@pytest.mark.parametrize("text", ["", "{", '{"model_type": "llama", "hidden_size": 4096,'])
def test_empty_or_truncated_hf_config_in_process(text, tmp_path):
    path = write(tmp_path, "config.json", text)
    with pytest.raises(SpecError, match=rf"^{path}: is not valid JSON"):
        moejax.load_model(str(path))


def test_hf_field_errors_name_the_path(tmp_path):
    path = write(tmp_path, "config.json", json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SpecError, match=rf"^{path}: model_type = 'gpt2' is invalid"):
        moejax.load_model(str(path))


# --- sizes checked before memory is taken (issue 20, item 4) ------------------------------------


def composed(*overrides):
    """The sweep config Hydra composes from ``TINY`` and ``overrides`` (in-process)."""
    from hydra import compose, initialize_config_dir

    from moejax.schema import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", [*TINY, *overrides])


TEN = "[1,2,3,4,5,6,7,8,9,10]"


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (
            ["grid.batches=[1,2]", "grid.interactivity.count=300000000"],
            ["grid.interactivity.count = 300000000 is invalid", "GB of working memory", "max_memory_bytes"],
        ),
        (
            [
                f"grid.hardware_space.{f}={TEN}"
                for f in ("hbm_bw", "hbm_bytes", "flops", "intra_bw", "inter_bw", "intra_latency", "inter_latency")
            ],
            ["grid.hardware_space = 10 hbm_bw x 10 hbm_bytes", "(1e+07 accelerators) is invalid", "working memory"],
        ),
        (
            ["grid.batches=[1,2,4,8,16,32,64,128]", "grid.interactivity.count=2", "max_memory_bytes=300"],
            ["grid.batches = [8 values] is invalid"],
        ),
        (
            [
                f"grid.partitions.{f}=[{','.join(map(str, range(1, 21)))}]"
                for f in ("tp", "ep", "pp", "dp_attn", "kvp", "dense_tp")
            ],
            ["grid.partitions = 1.28e+08 combinations is invalid", "working memory"],
        ),
        (
            [
                "grid.contexts=[" + ",".join(str(1024 + i) for i in range(1000)) + "]",
                "grid.num_gpus=[8,16,32,64,128,256,512]",
                "grid.kappas=[1,2,3,4,5,6,7,8]",
                "max_output_bytes=1e6",
            ],
            ["max_output_bytes = 1e+06 is invalid for this grid", "at least"],
        ),
    ],
)
def test_sizes_are_refused_before_allocating(overrides, fragments):
    """``check_sizes`` (``run`` calls it on the validated config, before the plan is built):
    levels, batches, design-space accelerators, partition candidates and the dataset's size, from
    the config alone. ``grid.interactivity.count=300000000`` allocated 3 GB before."""
    import time

    from moejax.engine.config import check_sizes
    from moejax.schema import sweep_config

    cfg = sweep_config(composed(*overrides))
    start = time.perf_counter()
    with pytest.raises(SpecError) as e:
        check_sizes(cfg)
    assert time.perf_counter() - start < 1.0
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_sizes_are_refused_beyond_the_machines_available_memory(monkeypatch):
    """Issue 20: memory needs are refused early when they exceed what the machine has, not only the
    ``max_memory_bytes`` setting (default 4 GB, more than many laptops have free). With 1 MB
    available, 100,000 interactivity levels (~6.4 MB by ``LEVEL_BYTES``) are refused naming the
    machine; with the machine's memory unknown, the setting alone decides (and lets it pass)."""
    from moejax.engine import config
    from moejax.schema import sweep_config

    cfg = sweep_config(composed("grid.batches=[1,2]", "grid.interactivity.count=100000"))
    monkeypatch.setattr(config, "available_memory_bytes", lambda: 1e6)
    with pytest.raises(
        SpecError,
        match=r"^grid.interactivity.count = 100000 is invalid: it needs about 0.0064 GB of working "
        r"memory, over the 0.001 GB this machine has available",
    ):
        config.check_sizes(cfg)
    monkeypatch.setattr(config, "available_memory_bytes", lambda: None)
    config.check_sizes(cfg)


def test_available_memory_is_read_from_the_machine():
    """Linux: ``MemAvailable``, a positive number of bytes no larger than the physical memory."""
    import os

    from moejax.engine.config import available_memory_bytes

    avail = available_memory_bytes()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert avail is not None and 0 < avail <= total


def test_size_refusal_from_the_command_line(command_line_runs):
    """The same check through the CLI: one line, exit 2, no file (peak RSS ~240 MB, measured)."""
    assert_refused(*command_line_runs["size"], "grid.interactivity.count = 300000000 is invalid")


ALIAS_BOMB = (
    "- id: [&a [x, x, x, x, x, x, x, x, x, x], "
    + ", ".join(  # the old loader hung printing this id
        f"&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")
    )
    + "]\n"
)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """A 1 KB "billion laughs" file (10⁹ nodes once expanded): refused by its node count, fast,
    for measurement files and catalogue YAML alike; the published file (which has anchors) loads."""
    import time

    from moejax.analysis import validation as val

    path = write(tmp_path, "bomb.yaml", ALIAS_BOMB)
    assert path.stat().st_size < 1024
    for load in (val.load_measurements, moejax.load_model):
        start = time.perf_counter()
        with pytest.raises(SpecError, match=rf"^{path}: node count = more than 1000000 \(YAML aliases expanded\) is invalid"):
            load(str(path))
        assert time.perf_counter() - start < 1.0
    assert len(val.load_measurements(ROOT / "moejax/data/reference/serving/measurements.yaml")) > 0


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_inputs_are_refused(depth, tmp_path):
    from moejax.analysis import validation as val

    path = write(tmp_path, "config.json", "[" * depth + "]" * depth)
    with pytest.raises(SpecError, match=rf"^{path}: nesting depth = .* is invalid: allowed at most 32 levels"):
        moejax.load_model(str(path))
    path = write(tmp_path, "m.yaml", "[" * depth + "]" * depth)
    with pytest.raises(SpecError, match=rf"^{path}: nesting depth = .* is invalid: allowed at most 32 levels"):
        val.load_measurements(path)


def test_oversized_input_file_is_refused(tmp_path):
    from moejax.catalogue.files import MAX_FILE_BYTES

    path = write(tmp_path, "config.json", " " * (MAX_FILE_BYTES + 1))
    with pytest.raises(SpecError, match=rf"^{path}: file size = {MAX_FILE_BYTES + 1} bytes is invalid: allowed at most"):
        moejax.load_model(str(path))


# --- one line, exit 2 for the inputs of issue 20, item 5 -----------------------------------------


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            ["partitions.dp_attn=4"],
            ["partitions.dp_attn = 4 is invalid: must be a list, e.g. partitions.dp_attn=[4]"],
        ),  # was a traceback
        (["batch=0"], ["batch = 0 is invalid", "or null (B_max)"]),  # was silently B_max
    ],
)
def test_point_refuses_in_one_line(args, fragments, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("HYDRA_FULL_ERROR", None)
    (tmp_path / "run").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.point",
            "model=mixtral-8x7b",
            "hardware=h100-sxm",
            "num_gpus=8",
            "context=4096",
            *args,
            f"hydra.run.dir={tmp_path / 'run' / 'out'}",
        ],
        cwd=tmp_path / "run",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert_refused(proc, tmp_path, *fragments)


def test_grid_file_with_a_list_for_a_dtype(command_line_runs):
    assert_refused(*command_line_runs["grid_file"], "grid.dtypes.kv = [] is invalid: allowed fp32, bf16")


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["grid.partitions.kv_modes=[]"], ["grid.partitions.kv_modes = [] is invalid: needs at least one of kvp, cp"]),
        (["grid.partitions.kv_modes=[kvp,none]"], ["grid.partitions.kv_modes = 'none' is invalid: allowed kvp, cp"]),
        (["grid.contexts=[1000.5]"], ["grid.contexts = 1000.5 is invalid", "integer"]),
    ],
)
def test_bad_grid_lists_in_process(overrides, fragments):
    from moejax.schema import sweep_config

    cfg = composed(*overrides)
    with pytest.raises(SpecError) as e:
        sweep_config(cfg)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "override,line",
    [
        ("overwrite=-815", "overwrite = -815 is invalid: must be true or false"),  # was read as true
        ("keep_partitions='1'", "keep_partitions = '1' is invalid: must be true or false"),
        ("summary=0", "summary = 0 is invalid: must be true or false"),
        ("sensitivities='0'", "sensitivities = '0' is invalid: must be true or false"),  # the issue's own example
    ],
)
def test_flags_must_be_booleans(override, line):
    from moejax.schema import sweep_config

    with pytest.raises(SpecError, match=f"^{re.escape(line)}$"):
        sweep_config(composed(override))
    sweep_config(composed("overwrite=true", "keep_partitions=false"))


def test_economics_must_be_a_mapping():
    from moejax.engine.workloads import economics_arrays

    with pytest.raises(SpecError, match=r"^grid.economics = nan is invalid: a mapping such as"):  # was a TypeError
        economics_arrays(["h100-sxm"], composed("grid.economics=nan").grid.economics)
    with pytest.raises(SpecError, match=r"^grid.economics.board_power = 3 is invalid: a mapping"):
        economics_arrays(["h100-sxm"], composed("grid.economics={board_power: 3}").grid.economics)


def test_group_given_a_number_is_one_line(monkeypatch):
    """``python -m moejax.sweep +grid=quick model=1``: Hydra's ValueError (was a traceback) as one line."""
    from moejax.cli import hydra_error_line

    monkeypatch.setattr("sys.argv", ["moejax.sweep", "+grid=quick", "model=1"])
    line = hydra_error_line(ValueError("Config group override must be a string or a list. Got int"))
    assert line.startswith("model = 1 is invalid: allowed ") and "deepseek-v3, " in line and "mixtral-8x7b" in line


def test_entry_dtypes_checked_even_when_overridden(tmp_path):
    text = (ROOT / "conf/model/mixtral-8x7b.yaml").read_text().replace("kv: bf16", "kv: []", 1)
    path = write(tmp_path, "m.yaml", text)
    with pytest.raises(SpecError, match=rf"^{path}: dtypes.kv = \[\] is invalid: allowed fp32"):
        moejax.load_model(str(path), kv="bf16")  # was accepted: the grid's kv replaced the entry's []


def test_hf_config_beyond_plausibility_names_the_field(tmp_path):
    cfg = {
        "model_type": "mixtral",
        "hidden_size": 4096,
        "num_hidden_layers": 3.8e16,
        "vocab_size": 32000,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
    }
    path = write(tmp_path, "config.json", json.dumps(cfg))
    with pytest.raises(SpecError, match=rf"^{path}: num_hidden_layers = 3.8e\+16 is invalid: must be an integer in \[1, 10000\]"):
        moejax.load_model(str(path))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: moejax.decode_step(None, H100, TP8, 4096), "model = None is invalid: must be a moejax.ModelSpec"),
        (
            lambda: moejax.decode_step("mixtral-8x7b", H100, {"tp": 8}, 4096),
            "partition = {'tp': 8} is invalid: must be a moejax.Partition, e.g. moejax.Partition(tp=8)",
        ),
        (lambda: moejax.decode_step("mixtral-8x7b", None, TP8, 4096), "hardware = None is invalid"),
        (lambda: moejax.prefill_step("mixtral-8x7b", H100, TP8, 4096, accounting="sol"), "accounting = 'sol' is invalid"),
        (lambda: moejax.Partition(tp="8"), "Partition.tp = '8' is invalid: must be a number, not a string"),
        (
            lambda: moejax.decode_step("mixtral-8x7b", H100, TP8, None),
            "context = None is invalid: must be a number",
        ),  # was float()'s TypeError
        (
            lambda: moejax.decode_step("mixtral-8x7b", H100, TP8, "4096"),
            "context = '4096' is invalid: must be a number",
        ),  # was accepted
        (lambda: moejax.decode_step("mixtral-8x7b", H100, TP8, 4096, kappa="5"), "kappa = '5' is invalid: must be a number"),
        (lambda: moejax.prefill_step("mixtral-8x7b", H100, TP8, [4096]), "context = [4096] is invalid: must be a number"),
    ],
)
def test_api_wrong_types_name_the_argument(call, message):
    """Was an AttributeError from inside the kernel, or JAX's TypeError about abstract arrays."""
    with pytest.raises(SpecError, match=f"^{re.escape(message)}"):
        call()
