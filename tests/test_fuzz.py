"""Fuzzers over everything a user can type (issue 20, item 4): every CLI entry point (sweep, point,
breakeven, validate, plot, fit) and the two file loaders a user hands moejax (Hugging Face
``config.json``, measurement YAML). Each outcome is either success or exactly one ``error: ...``
line on stderr with exit code 2 (a loader: a value, or a one-line ``SpecError``), never a
traceback, another exit code or a hang.

The commands run in-process (``cli_runs.run_main``), so one example costs a Hydra composition
(~0.3 s), not an interpreter start. Strategies are biased toward cheap failing inputs (one to three
overrides of a tiny valid base: wrong types, signs, sizes, syntax, unknown keys) so that a few
examples per test are valid tiny runs. Derandomized (a fixed seed): CI sees the same examples
every time.

Environment: ``MOEJAX_FUZZ_EXAMPLES`` examples per command (default 100, the loaders 400: the six
command fuzzers take about 190 worker-seconds on 2 cores, a Hydra composition costing ~0.4 s and
the first valid run of each command compiling its kernels); ``MOEJAX_FUZZ_HANG_S``
seconds after which one example counts as a hang (default 600); ``MOEJAX_FUZZ_LOG=PATH`` appends
one line per example (``test<TAB>outcome<TAB>seconds<TAB>argv``) and, with ``MOEJAX_FUZZ_COLLECT=1``, records
failures there instead of stopping at the first (for long runs that count every traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_runs import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = int(os.environ.get("MOEJAX_FUZZ_EXAMPLES", "100"))  # per command; the loaders (milliseconds each) get 4x
HANG_S = int(os.environ.get("MOEJAX_FUZZ_HANG_S", "600"))  # the first κ* compile took 120+ s on a loaded 2-core box
LOG = os.environ.get("MOEJAX_FUZZ_LOG")
COLLECT = os.environ.get("MOEJAX_FUZZ_COLLECT") == "1"
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
LOADER_FUZZ = settings(FUZZ, max_examples=4 * EXAMPLES)

# ---- values a user might type -------------------------------------------------------------------
WEIRD = [
    "",
    "null",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "0.5",
    "1",
    "8",
    "1e30",
    "1e400",
    "[]",
    "[0]",
    "[1,2]",
    "[[1]]",
    "{}",
    "{a: 1}",
    "true",
    "false",
    "'1'",
    "x",
    "'[1]'",
    "${oops}",
    "???",
    "1_000",
    "0x10",
    "[nan]",
    "[-1]",
    "[1e30]",
    "[x]",
    "[true]",
    "2147483648",
    "[2147483648]",
    "[8.5]",
    "a,b",
    "=",
    "[1,",
    "'",
    "\\",
    "~",
    "[null]",
]
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=6)
VALUE = st.one_of(
    st.sampled_from(WEIRD),
    st.sampled_from(WEIRD),  # twice: the common mistakes dominate
    st.integers(-(10**13), 10**13).map(str),
    st.floats().map(repr),
    TEXT,
    st.lists(st.integers(-3, 70000), max_size=3).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
)


def overrides(keys: dict[str, st.SearchStrategy], unknown=("foo", "grid.foo", "partitions.x", "hydra.foo")):
    """One to three ``key=value`` overrides: a known key with a likely value or any value, sometimes
    an unknown key, a ``+`` / ``~`` prefix, or a raw token."""
    known = st.sampled_from(sorted(keys)).flatmap(lambda k: st.tuples(st.just(k), st.one_of(keys[k], keys[k], VALUE)))
    item = st.one_of(
        known.map(lambda kv: f"{kv[0]}={kv[1]}"),
        known.map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.tuples(st.sampled_from(["+", "~", "++"]), known).map(lambda p: f"{p[0]}{p[1][0]}={p[1][1]}"),
        st.sampled_from(unknown).flatmap(lambda k: VALUE.map(lambda v: f"{k}={v}")),
        TEXT,
    )
    return st.lists(item, min_size=1, max_size=3)


class Hang(BaseException):
    """One example ran past ``MOEJAX_FUZZ_HANG_S`` (a BaseException: nothing in moejax catches it)."""


@contextlib.contextmanager
def hang_guard():
    def alarm(signum, frame):
        raise Hang(f"no outcome after {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def record(test: str, outcome: str, argv, seconds: float) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{test}\t{outcome}\t{seconds:.2f}\t{json.dumps([str(a) for a in argv])}\n")


def judge(test: str, argv, call) -> None:
    """Run ``call() -> (code, stdout, stderr)``; success, or one ``error:`` line with exit code 2."""
    start = time.perf_counter()
    try:
        with hang_guard():
            code, _, err = call()
    except Hang:
        code, err = None, "hang"
    seconds = time.perf_counter() - start
    lines = err.strip().splitlines()
    if code == 0 and "Traceback" not in err:
        outcome = "ok"
    elif code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
        outcome = "error"
    else:
        outcome = "hang" if code is None else "traceback"
    record(test, outcome if outcome in ("ok", "error") else f"{outcome}: {err[-1500:]!r}", argv, seconds)
    if outcome not in ("ok", "error") and not COLLECT:
        pytest.fail(f"{test} {argv}: {outcome}, exit {code}\n{err[-3000:]}")


def command(test: str, module: str, base, extra, tmp: Path) -> None:
    """One example run from its own directory ``tmp``: a relative path typed as a value (``out=8``)
    lands there, not in the repository (the 1,000-example run wrote ``8/`` and ``w/`` beside it)."""
    argv = [*base, *extra]
    with contextlib.chdir(tmp):
        judge(test, argv, lambda: run_main(module, argv, hydra_dir=tmp / "run"))


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def fresh(tmp: Path, name: str) -> Path:
    """A new empty directory per example (examples share the module's temporary directory)."""
    for i in range(10**6):
        d = tmp / f"{name}-{i}"
        if not d.exists():
            d.mkdir()
            return d
    raise AssertionError("unreachable")


# ---- grid commands --------------------------------------------------------------------------------
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x7b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[1024]",
    "grid.kappas=[5]",
    "grid.partitions.tp=[8]",
    "grid.partitions.ep=[8]",
    "grid.partitions.pp=[1]",
    "grid.partitions.dp_attn=[1]",
    "grid.partitions.kvp=[1]",
    "grid.partitions.dense_tp=[8]",
    "summary=false",
    "progress=false",
    "compilation_cache=null",
]
LISTS = st.sampled_from(["[1]", "[8]", "[1,8]", "[0]", "[]", "[3]", "[-1]", "[2.5]", "[64]", "[x]"])
GRID_KEYS = {
    "grid.models": st.sampled_from(["[mixtral-8x7b]", "[qwen3-235b-a22b]", "[llama-3-70b]", "[nope]", "[]", "mixtral-8x7b", "1"]),
    "grid.hardware": st.sampled_from(["[h100-sxm]", "[b200]", "[tpu-v6e]", "[gb200-nvl72]", "[nope]", "[]"]),
    "grid.num_gpus": st.sampled_from(["[8]", "[16]", "[0]", "[-8]", "[3]", "[1099511627776]", "[abc]", "[8.5]"]),
    "grid.contexts": st.sampled_from(["[1024]", "[4096]", "[0]", "[1000.5]", "[1e30]", "[nan]", "[inf]"]),
    "grid.kappas": st.sampled_from(["[5]", "[2]", "[0]", "[-2]", "[nan]", "[5,5]", "[1e9]"]),
    "grid.batch": st.sampled_from(["bmax", "1", "64", "0", "-3", "2.5", "lots", "1e12"]),
    "grid.partitions.tp": LISTS,
    "grid.partitions.ep": LISTS,
    "grid.partitions.pp": LISTS,
    "grid.partitions.kv_modes": st.sampled_from(["[]", "[kvp]", "[cp]", "[x]", "kvp"]),
    "grid.dtypes.kv": st.sampled_from(["bf16", "fp8", "nvfp4", "fp7", "[]", "null"]),
    "grid.accounting.mode": st.sampled_from(["realistic", "sol", "custom", "optimistic"]),
    "grid.economics": st.sampled_from(["nan", "null", "{}", "[1]"]),
    "grid.interactivity.count": st.sampled_from(["3", "0", "-1", "300000000", "2.5"]),
    "grid.batches": st.sampled_from(["[1,8]", "[]", "[0]", "[1e12]", "null"]),
    "grid.hardware_space.hbm_bw": st.sampled_from(["[1]", "[0.5,2]", "[-1]", "[]", "[1e300]"]),
    "precision": st.sampled_from(["float32", "float64", "float16", "1"]),
    "max_chunk_evaluations": st.sampled_from(["4096", "0", "-1", "1e30"]),
    "max_output_bytes": st.sampled_from(["100", "0", "-1", "1e30", "x"]),
    "keep_partitions": st.sampled_from(["true", "false", "'1'", "1"]),
    "sensitivities": st.sampled_from(["false", "'0'", "0", "true"]),
    "overwrite": st.sampled_from(["true", "false", "-815"]),
    "model": st.sampled_from(["mixtral-8x7b", "nope", "1", "[a,b]"]),
    "hardware": st.sampled_from(["h100-sxm", "nope", "1"]),
}
BREAKEVEN_KEYS = {
    **{k: v for k, v in GRID_KEYS.items() if k not in ("keep_partitions", "sensitivities")},
    "breakeven.kappa_min": st.sampled_from(["0.25", "0", "-1", "100", "nan"]),
    "breakeven.kappa_max": st.sampled_from(["64", "0.1", "inf", "x"]),
    "breakeven.bisection_steps": st.sampled_from(["4", "0", "-2", "1.5", "1000000000"]),
    "breakeven.rounds": st.sampled_from(["1", "0", "-1"]),
    "breakeven.adam_steps": st.sampled_from(["2", "0", "x"]),
    "breakeven.tolerance": st.sampled_from(["1e-3", "0", "-1", "nan"]),
    "breakeven.learning_rate": st.sampled_from(["0.2", "0", "inf"]),
}


@FUZZ
@given(extra=overrides(GRID_KEYS))
def test_fuzz_sweep(tmp, extra):
    d = fresh(tmp, "sweep")
    command("sweep", "moejax.sweep", [*TINY, f"out={d / 'x.nc'}", f"parts_dir={d / 'parts'}"], extra, d)


@FUZZ
@given(extra=overrides(BREAKEVEN_KEYS))
def test_fuzz_breakeven(tmp, extra):
    d = fresh(tmp, "breakeven")
    base = [
        *TINY,
        "breakeven.bisection_steps=12",
        "breakeven.rounds=1",
        "breakeven.adam_steps=2",
        f"out={d / 'b.nc'}",
        f"parts_dir={d / 'parts'}",
    ]
    command("breakeven", "moejax.breakeven", base, extra, d)


# ---- point ----------------------------------------------------------------------------------------
POINT = [
    "model=mixtral-8x7b",
    "hardware=h100-sxm",
    "num_gpus=8",
    "context=4096",
    "compilation_cache=null",
    "partitions.pp=[1]",
    "partitions.kvp=[1]",
    "batches=[1,64]",
    "levels=[10,50]",
]
POINT_KEYS = {
    "num_gpus": st.sampled_from(["8", "16", "0", "-8", "3", "1e30", "x"]),
    "context": st.sampled_from(["4096", "1", "0", "-1", "1000.5", "nan", "1e30"]),
    "isl": st.sampled_from(["1024", "0", "-1", "null"]),
    "osl": st.sampled_from(["256", "0", "nan"]),
    "batch": st.sampled_from(["null", "1", "64", "0", "-1", "2.5", "1e30", "true"]),
    "batches": st.sampled_from(["[1,8]", "[]", "[0]", "[-1]", "[1e30]", "8", "[x]"]),
    "levels": st.sampled_from(["[10]", "[]", "[0]", "[-5]", "[nan]", "[1e30]"]),
    "top": st.sampled_from(["1", "0", "-1", "1e9", "x"]),
    "chunk": st.sampled_from(["0", "512", "-1", "0.5"]),
    "precision": st.sampled_from(["float32", "float64", "float16"]),
    "launch": st.sampled_from(["vllm", "sglang", "trtllm", "nope", "1"]),
    "price_per_gpu_hour": st.sampled_from(["2.5", "0", "-1", "nan", "x"]),
    "board_power": st.sampled_from(["700", "0", "-1", "inf"]),
    "dtypes.kv": st.sampled_from(["bf16", "fp8", "fp7", "[]", "null"]),
    "dtypes.weights": st.sampled_from(["fp8", "x", "1"]),
    "partitions.tp": LISTS,
    "partitions.ep": LISTS,
    "partitions.dp_attn": LISTS,
    "partitions.kv_modes": st.sampled_from(["[]", "[kvp]", "[x]"]),
    "what_if.hbm_bw": st.sampled_from(["2", "0", "-1", "nan", "x"]),
    "what_if.overlap": st.sampled_from(["0.5", "2", "-1"]),
    "accounting": st.sampled_from(["realistic", "sol", "nope"]),
    "model": st.sampled_from(["llama-3-70b", "nope", "1"]),
    "hardware": st.sampled_from(["b200", "nope"]),
}


@FUZZ
@given(extra=overrides(POINT_KEYS))
def test_fuzz_point(tmp, extra):
    command("point", "moejax.point", POINT, extra, fresh(tmp, "point"))


# ---- validate -------------------------------------------------------------------------------------
def measurement_files(tmp: Path) -> dict[str, Path]:
    d = tmp / "measurements"
    if not d.exists():
        d.mkdir()
        (d / "bad.yaml").write_text("- id: [unclosed\n")
        (d / "empty.yaml").write_text("")
        (d / "scalar.yaml").write_text("3\n")
        (d / "bomb.yaml").write_text(
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh"))
        )
        (d / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
        (d / "binary.yaml").write_bytes(bytes(range(256)))
        (d / "dir.yaml").mkdir()
    return {
        "small": DATA / "validate-small.yaml",
        "silicon": DATA / "silicon-small.csv",
        **{p.stem: p for p in d.iterdir()},
        "missing": d / "missing.yaml",
    }


VALIDATE_KEYS = {
    "strict": st.sampled_from(["true", "false", "3", "'yes'"]),
    "fit": st.sampled_from(["false", "true", "1", "'0'"]),
    "accounting": st.sampled_from(["realistic", "sol", "nope"]),
    "calibration.free": st.sampled_from(["[hbm_efficiency]", "[]", "[nope]", "hbm_efficiency", "[1]"]),
    "calibration.per_family": st.sampled_from(["true", "false", "x"]),
    "calibration.steps": st.sampled_from(["2", "0", "-1", "x", "1e30"]),
    "calibration.serving_steps": st.sampled_from(["2", "0", "x"]),
    "calibration.learning_rate": st.sampled_from(["0.05", "0", "-1", "nan", "x"]),
    "calibration.write": st.sampled_from(["null", "/sys/x.yaml", "''"]),
    "out": st.sampled_from(["/sys/v", "''", "null"]),
}


@FUZZ
@given(
    extra=overrides(VALIDATE_KEYS),
    which=st.sampled_from(["small", "small", "silicon", "bad", "empty", "scalar", "bomb", "deep", "binary", "dir", "missing"]),
)
def test_fuzz_validate(tmp, extra, which):
    d = fresh(tmp, "validate")
    base = [
        f"measurements={measurement_files(tmp)[which]}",
        f"out={d / 'out'}",
        "compilation_cache=null",
        "calibration.steps=2",
        "calibration.serving_steps=2",
    ]
    command("validate", "moejax.validate", base, extra, d)


# ---- fit ------------------------------------------------------------------------------------------
FIT = ["design.total_params=[1e11]", "design.n_experts=[8]", "design.top_k=[2]", "regimes=[fast_decode]"]  # latency: tiny
FIT_KEYS = {
    "mode": st.sampled_from(["components", "components", "latency", "x", "1", "[]"]),
    "precision": st.sampled_from(["float64", "float32", "float16"]),
    "accelerator": st.sampled_from(["h100-sxm", "nope", "1"]),
    "anchor": st.sampled_from(["llama-3-405b", "mixtral-8x7b", "nope"]),
    "family": st.sampled_from(["epoch-cube-root", "keep-attention", "x"]),
    "design.total_params": st.sampled_from(["[1e11]", "[]", "[0]", "[-1]", "[1e30]", "1e11"]),
    "design.n_experts": st.sampled_from(["[8]", "[]", "[0]", "[1]", "[2.5]"]),
    "design.top_k": st.sampled_from(["[2]", "[0]", "[100]", "[x]"]),
    "design.max_k_fraction": st.sampled_from(["0.5", "0", "-1", "2", "nan"]),
    "design.pairs": st.sampled_from(["null", "[[8,2]]", "[[2,8]]", "[]", "[8]", "[[0,0]]"]),
    "regimes": st.sampled_from(["[fast_decode]", "[]", "[nope]", "fast_decode"]),
    "regime_defs.fast_decode.batch": st.sampled_from(["8", "0", "-1", "x"]),
    "regime_defs.fast_decode.phase": st.sampled_from(["decode", "prefill", "x"]),
    "accounting.overlap": st.sampled_from(["0", "0.5", "2", "x"]),
    "dtypes.kv": st.sampled_from(["bf16", "fp7", "[]"]),
}


@FUZZ
@given(extra=overrides(FIT_KEYS))
def test_fuzz_fit(tmp, extra):
    d = fresh(tmp, "fit")
    command("fit", "moejax.fit", [*FIT, f"out={d / 'fit.nc'}"], extra, d)


# ---- plot -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def datasets(tmp):
    """A real tiny sweep dataset, and files that are not one."""
    d = tmp / "datasets"
    d.mkdir()
    code, _, err = run_main(
        "moejax.sweep",
        [
            *TINY,
            f"out={d / 'sweep.nc'}",  # the sweep test's grid: compiled once
            f"parts_dir={d / 'parts'}",
        ],
        hydra_dir=d / "run",
    )
    assert code == 0, err
    raw = (d / "sweep.nc").read_bytes()
    (d / "truncated.nc").write_bytes(raw[: len(raw) // 2])
    (d / "empty.nc").write_bytes(b"")
    (d / "text.nc").write_text("not netCDF\n")
    (d / "dir.nc").mkdir()
    (d / "full").mkdir()
    (d / "full" / "keep.txt").write_text("x")
    return d


@FUZZ
@given(
    which=st.sampled_from(["sweep.nc", "sweep.nc", "truncated.nc", "empty.nc", "text.nc", "dir.nc", "missing.nc"]),
    out=st.sampled_from(["new", "new", "full", "file", "/sys/plots", "none"]),
    overwrite=st.booleans(),
    flags=st.lists(
        st.tuples(
            st.sampled_from(["--model", "--hardware", "--num-gpus", "--kappa", "--nope", ""]),
            st.one_of(st.sampled_from(["mixtral-8x7b", "h100-sxm", "8", "5", "2", "0", "-1", "nan", "x", ""]), TEXT),
        ),
        max_size=2,
    ),
)
def test_fuzz_plot(tmp, datasets, which, out, overwrite, flags):
    d = fresh(tmp, "plot")
    target = {
        "new": d / "p",
        "full": datasets / "full",
        "file": datasets / "text.nc",
        "/sys/plots": Path("/sys/plots"),
        "none": None,
    }[out]
    argv = [
        str(datasets / which),
        *(["--out", str(target)] if target else []),
        *(["--overwrite"] if overwrite else []),
        *(x for flag, value in flags for x in ((flag, value) if flag else (value,))),
    ]
    if target is None:  # the default plots/<name>/ beside the dataset: a copy of it in this example's directory
        if (datasets / which).is_file():
            (d / which).write_bytes((datasets / which).read_bytes())
        argv[0] = str(d / which)
    judge("plot", argv, lambda: run_main("moejax.plot", argv))


# ---- loaders --------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
HF_FILES = sorted((DATA / "hf").glob("*.json"))


def _mutate(base: dict, keys, changes: list) -> dict:
    out = dict(base)
    for op, key, value in changes:
        key = key if key is not None else keys[hash(str(value)) % len(keys)] if keys else "x"
        if op == "drop":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def mutations(keys: list[str]):
    return st.lists(
        st.tuples(
            st.sampled_from(["set", "set", "drop"]),
            st.one_of(st.sampled_from(keys), TEXT),
            st.one_of(JSON, st.sampled_from([0, -1, 1e300, 3.8e16, float("nan"), "", [], {}, True])),
        ),
        min_size=1,
        max_size=4,
    )


def loader_outcome(test: str, what, call) -> None:
    """A loader returns, or raises one ``SpecError`` whose message is one line; nothing else."""
    from moejax.physics.specs import SpecError

    def run():
        try:
            call()
        except SpecError as e:
            return (2, "", f"error: {e}\n") if "\n" not in str(e) else (1, "", f"multi-line SpecError: {e}")
        return 0, "", ""

    judge(test, [what], lambda: _traceback_as_text(run))


def _traceback_as_text(run):
    import traceback

    try:
        return run()
    except (Exception, RecursionError):  # noqa: BLE001 - the outcome under test
        return 1, "", traceback.format_exc()


@LOADER_FUZZ
@given(
    name=st.sampled_from(HF_FILES),
    data=st.data(),
    raw=st.sampled_from([None] * 8 + ["[" * 5000, "{" * 3, "", "null", "[]", "\x00\xff"]),
)
def test_fuzz_hf_config(tmp, name, data, raw):
    import moejax

    base = json.loads(name.read_text())
    cfg = _mutate(base, sorted(base), data.draw(mutations(sorted(base))))
    path = fresh(tmp, "hf") / "config.json"
    path.write_text(json.dumps(cfg) if raw is None else raw)
    loader_outcome("hf_config", cfg if raw is None else raw[:20], lambda: moejax.load_model(str(path)))


MEAS_KEYS = [
    "id",
    "source",
    "firmness",
    "model",
    "hardware",
    "num_gpus",
    "partition",
    "dtypes",
    "phase",
    "batch",
    "context",
    "measured",
    "notes",
    "usable",
    "mtp",
    "isl",
    "osl",
]


@LOADER_FUZZ
@given(data=st.data(), where=st.sampled_from(["entry", "entry", "measured", "partition", "dtypes", "list"]))
def test_fuzz_measurement_yaml(tmp, data, where):
    from moejax.analysis.validation import load_measurements, resolve_all

    entries = yaml.safe_load((DATA / "validate-small.yaml").read_text())
    i = data.draw(st.integers(0, len(entries) - 1))
    if where == "list":
        doc = data.draw(st.one_of(JSON, st.just(entries[:1] * 2)))  # any document, or a duplicate id
    else:
        doc = [dict(e) for e in entries]
        target = doc[i] if where == "entry" else doc[i].get(where)
        if not isinstance(target, dict):
            target = {}
        changed = _mutate(target, sorted(target) or MEAS_KEYS, data.draw(mutations(sorted(target) or MEAS_KEYS)))
        if where == "entry":
            doc[i] = changed
        else:
            doc[i][where] = changed
    path = fresh(tmp, "meas") / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    strict = data.draw(st.booleans())
    loader_outcome("measurement_yaml", where, lambda: resolve_all(load_measurements(path), strict))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:xdist"]))


# ---- what the fuzzers found (each was a traceback or a multi-line report; now one line, exit 2) -----
@pytest.mark.parametrize(
    "module,argv,fragment",
    [
        ("moejax.point", [*POINT, "+accounting=[8.5]"], "accounting = [8.5] is invalid: allowed"),  # Hydra's TypeError
        ("moejax.point", [*POINT, "board_power=???"], "board_power is missing"),  # "Error executing job" + a second line
        ("moejax.validate", ["out=-3.8e16"], "out = -3.8e+16 is invalid: must be a path"),  # Path(float): TypeError
        ("moejax.calibrate", ["out=[1]"], "out = 'ListConfig' is invalid: must be a path"),
        ("moejax.fit", ["mode=latency", "out=2.5"], "out = 2.5 is invalid: must be a path"),
        ("moejax.sweep", [*TINY, "grid.batches=1e30"], "grid.batches = 1e+30 is invalid"),  # list(float): TypeError
        ("moejax.point", [*POINT, "levels=1e400"], "levels = inf is invalid: a non-empty list"),  # tuple(float): TypeError
        ("moejax.plot", ["x.nc", "--nope", "0"], "command line is invalid: unrecognized arguments: --nope 0"),  # usage block
        ("moejax.plot", ["x.nc", "--num-gpus", "[r/"], "command line is invalid: argument --num-gpus"),
        ("moejax.plot", ["x.nc", "9\x85x"], "unrecognized arguments: 9\\x85x"),  # U+0085 broke the line (1000-example run)
        # 2^(steps+1) overflowed a float: OverflowError (1000-example run, 2026-12-07)
        ("moejax.breakeven", [*TINY, "breakeven.bisection_steps=1000000000"], "breakeven.bisection_steps = 1000000000 is"),
        ("moejax.breakeven", [*TINY, "breakeven.adam_steps=100000000"], "breakeven.adam_steps = 100000000 is invalid"),
    ],
)
def test_fuzz_findings_are_one_line(module, argv, fragment, tmp_path, monkeypatch):
    from cli_runs import assert_one_line

    monkeypatch.chdir(tmp_path)  # relative outputs (parts, plots) land here
    code, _, err = run_main(module, argv, hydra_dir=tmp_path / "run")
    assert_one_line(code, err, fragment)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_fuzz_finding_measurement_dtype_list(tmp_path):
    """``dtypes: {kv: [bf16]}`` in a measurement entry: was ``TypeError: unhashable type: 'list'``."""
    from moejax.analysis.validation import load_measurements
    from moejax.physics.specs import SpecError

    entries = yaml.safe_load((DATA / "validate-small.yaml").read_text())
    entries[0]["dtypes"]["kv"] = ["bf16"]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(entries))
    with pytest.raises(SpecError, match=r"dtypes\.kv = \['bf16'\] is invalid: allowed "):
        load_measurements(path)


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("model_type", ["mixtral"], "supported: "),
        ("model_type", {"a": 1}, "supported: "),
        ("hidden_act", ["silu"], "allowed "),
        ("hidden_act", {"a": 1}, "allowed "),
    ],
)
def test_fuzz_finding_hf_field_not_a_string(field, value, allowed, tmp_path):
    """A list or mapping as ``model_type`` or ``hidden_act`` in config.json: was ``TypeError:
    unhashable type`` (the 1000-example run: 59 of about 3000 HF configs)."""
    import moejax
    from moejax.physics.specs import SpecError

    cfg = json.loads((DATA / "hf" / "mixtral-8x22b.json").read_text())
    cfg[field] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(SpecError, match=rf"{field} = .* is invalid: {allowed}"):
        moejax.load_model(str(path))


def test_fuzz_finding_binary_measurement_file(tmp_path, monkeypatch):
    """A binary file as ``measurements=`` (the 1000-example validate run): was a
    ``UnicodeDecodeError`` traceback from PyYAML's reader; now one line naming the first bad byte."""
    from cli_runs import assert_one_line

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"- id: x\n" + bytes(range(128, 256)))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main("moejax.validate", [f"measurements={binary}"], hydra_dir=tmp_path / "run")
    assert_one_line(code, err, "byte 8 = b'\\x80' is invalid: the file must be UTF-8 text")


def test_fuzz_finding_line_break_in_a_key_stays_one_line(tmp_path):
    """A key holding U+0085 (NEL, a line break to ``str.splitlines``) in a measurement entry (the
    1000-example loader run): the message named it raw and broke in two; every ``SpecError`` now
    writes line breaks as escapes."""
    from moejax.analysis.validation import load_measurements
    from moejax.physics.specs import SpecError

    entries = yaml.safe_load((DATA / "validate-small.yaml").read_text())
    entries[0]["dtypes"]["KEY"] = "bf16"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(entries).replace("KEY", '"a\\Nb"'))  # YAML's \N escape is U+0085
    with pytest.raises(SpecError) as e:
        load_measurements(path)
    assert len(str(e.value).splitlines()) == 1 and "dtypes.a\\x85b is not a known field" in str(e.value)
