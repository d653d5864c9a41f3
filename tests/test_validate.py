"""Validation against measured serving results (moejax.analysis.validation, python -m moejax.validate):
the CLI on a small file, predictions equal to a direct kernel evaluation, every bad input as one
line with exit code 2 and no files, and the fit recovering known constants (in-sample and
leave-one-out) from synthetic measurements. Nothing here tests thresholds on the real file."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_runs import forked, run_main

from moejax import Accounting, Partition, Workload, decode_point, load_hardware, load_model, prefill_point
from moejax.analysis import validation as val
from moejax.analysis.validation.measurements import check_entry
from moejax.catalogue import accounting_from_mapping, load_accounting
from moejax.engine.grid import stack

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "data" / "validate-small.yaml"
SILICON_SMALL = ROOT / "tests" / "data" / "silicon-small.csv"
SHARED = ROOT.parent / "shared" / "reference"  # the newest published files, when beside the clone
VENDORED = ROOT / "moejax" / "data" / "reference"  # their copies in the package
KEYS = {"n", "evaluated", "skipped", "not_expressible", "infeasible", "median_abs_log_ratio", "p90_abs_log_ratio", "predicted"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """``python -m moejax.validate`` on the small file, run in this process (cli_runs.run_main): its
    evaluation is the compiled program test_one_vmapped_call_matches_per_point_calls runs."""
    out = tmp_path_factory.mktemp("small") / "out"
    args = [f"measurements={SMALL.relative_to(ROOT)}", "accounting=sol", f"out={out}", "compilation_cache=null"]
    code, stdout, stderr = run_main("moejax.validate", args, hydra_dir=out.parent / "hydra")
    assert code == 0, stderr[-2000:]
    return json.loads(stdout.strip().splitlines()[-1]), stdout, out


def test_cli_small_file(small_run):
    record, stdout, out = small_run
    assert KEYS <= set(record) and record["n"] == 6 and record["evaluated"] == 5
    assert set(record["predicted"]) == {
        "small-dsv3-h200-tp8-b64",
        "small-dsv3-h100-prefill-max",
        "small-llama70b-h100-max",
        "small-dsv3-b200-mtp",
        "small-gptoss",
    }  # gpt-oss-120b: per-layer patterns (issue 13)
    assert record["skipped"] == ["small-unusable"]
    assert record["not_expressible"] == {}
    figure = {m.id: m.figure for m in val.load_measurements(SMALL)}
    value = {i: record["predicted"][i][figure[i]] for i in record["predicted"]}
    assert record["infeasible"] == {} and all(v > 0 for v in value.values())
    ratios = [math.log(v / m) for v, m in zip(value.values(), (0.0325, 6000.0, 1000.0, 250.0, 0.015))]
    assert record["median_abs_log_ratio"] == pytest.approx(float(np.median(np.abs(ratios))), rel=1e-9)
    header = next(line for line in stdout.splitlines() if line.startswith("id "))
    for column in ("measured", "predicted", "ratio", "TPOT (s)", "TTFT (s)", "bound", "dominant term"):
        assert column in header
    assert "batch max = " in stdout and "small-unusable" in stdout
    assert (out / "validation.csv").is_file() and json.loads((out / "summary.json").read_text()) == record
    decode = record["predicted"]["small-dsv3-h200-tp8-b64"]  # every comparable figure, consistent with each other
    assert decode["tpot"] == pytest.approx(decode["step_time"], rel=1e-12) and decode["ttft"] is None
    assert decode["tokens_per_s_per_user"] == pytest.approx(1 / decode["step_time"], rel=1e-9)
    prefill = record["predicted"]["small-dsv3-h100-prefill-max"]
    assert prefill["tpot"] is None and prefill["ttft"] == prefill["step_time"]
    served = record["predicted"]["small-gptoss"]  # an aggregated serving benchmark: a TTFT, and the prompts in TPOT
    assert served["ttft"] > 0 and served["tpot"] == pytest.approx(served["step_time"], rel=1e-12)


def _direct(m, hw, p, context, acc, phase, batch=None, mtp=(0.0, 0.0)):
    """The same point by hand with the physics kernel (SI units), at the best of the dense-FFN TP
    degrees the validation searches (the measurements do not publish it)."""
    g = float(p.gpus_per_stage)
    best = None
    for t in (1.0, 2.0, 4.0, 8.0, 0.0):
        if t and (t >= g or g % t):
            continue
        q = dataclasses.replace(p, dense_tp=t)
        if phase == "prefill":
            b = batch or float(decode_point(m, hw, q, Workload(context=context, batch=0.0), acc).b_max)
            r = prefill_point(m, hw, q, Workload(context=context, batch=b), acc)
        else:
            r = decode_point(m, hw, q, Workload(context=context, batch=batch or 0.0, draft_tokens=mtp[0], accepted=mtp[1]), acc)
        if best is None or float(r.throughput_per_gpu) > float(best.throughput_per_gpu):
            best = r
    return best


def _model(name, weights, kv, gemm, experts=None):
    """A measurement's dtypes as the validation maps them (moejax/data/reference/serving/README.md)."""
    return load_model(
        name,
        weights=weights,
        experts=experts or weights,
        kv=kv,
        gemm=gemm,
        activations="bf16",
        dispatch="fp8" if gemm in ("fp8", "fp4") else "bf16",
    )


def test_predictions_equal_direct_kernel(small_run):
    """Each predicted figure is the kernel's own number for that point (1e-6 relative)."""
    record, _, _ = small_run
    pred = record["predicted"]
    acc = Accounting()
    r = _direct(
        _model("deepseek-v3", "fp8", "bf16", "fp8"), load_hardware("h200"), Partition(tp=8.0), 1382.0, acc, "decode", 64.0
    )
    assert pred["small-dsv3-h200-tp8-b64"]["step_time"] == pytest.approx(float(r.step_time), rel=1e-6)
    r = _direct(
        _model("deepseek-v3", "fp8", "bf16", "fp8"),
        load_hardware("h100-sxm"),
        Partition(ep=16.0, dp_attn=16.0),
        2048.0,
        acc,
        "prefill",
    )
    assert pred["small-dsv3-h100-prefill-max"]["throughput_per_gpu"] == pytest.approx(float(r.throughput_per_gpu), rel=1e-6)
    r = _direct(
        _model("llama-3-70b", "bf16", "bf16", "bf16"), load_hardware("h100-sxm"), Partition(tp=8.0), 2048.0, acc, "decode"
    )
    assert pred["small-llama70b-h100-max"]["throughput_per_gpu"] == pytest.approx(float(r.throughput_per_gpu), rel=1e-6)
    r = _direct(
        _model("deepseek-v3", "fp8", "fp8", "fp8"),
        load_hardware("b200"),
        Partition(tp=8.0, ep=8.0),
        2048.0,
        acc,
        "decode",
        2.0,
        mtp=(3.0, 1.8),
    )
    assert pred["small-dsv3-b200-mtp"]["tokens_per_s_per_user"] == pytest.approx(float(r.tokens_per_s_per_user), rel=1e-6)
    assert pred["small-dsv3-b200-mtp"]["tpot"] == pytest.approx(float(r.step_time) / 2.8, rel=1e-6)


def test_one_vmapped_call_matches_per_point_calls():
    """The stacked, vmapped evaluation equals evaluating each point alone."""
    points, _, _ = val.resolve_all(val.load_measurements(SMALL))
    together = val.evaluate(points, Accounting())
    alone = np.array([val.evaluate([p], Accounting()).predicted[0] for p in points])
    np.testing.assert_allclose(together.predicted, alone, rtol=1e-12)


def test_infeasible_is_reported_not_dropped(tmp_path):
    """A point that does not fit in memory is evaluated, counted and reported, with no figures. It
    stands in the small file for small-llama70b-h100-max (a decode point with as many variants), so
    the evaluation is the small file's compiled program."""
    entries = yaml.safe_load(SMALL.read_text())
    big = copy.deepcopy(entries[0])
    big.update(
        id="too-big",
        model="llama-3-405b",
        hardware="h100-sxm",
        batch=512,
        context=131072,
        dtypes={"weights": "bf16", "kv": "bf16", "activations": "bf16"},
        measured={"step_time": 1.0, "tokens_per_s_per_user": None, "throughput_per_gpu": None},
    )
    assert entries[2]["id"] == "small-llama70b-h100-max"
    entries[2] = big
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(entries))
    points, _, _ = val.resolve_all(val.load_measurements(path))
    ev = val.evaluate(points, Accounting())
    record = val.summary(len(points), ev, {}, [])
    assert record["evaluated"] == len(points) == 5 and set(record["predicted"]["too-big"].values()) == {None}
    assert "does not fit in memory at batch 512" in record["infeasible"]["too-big"]
    assert set(record["infeasible"]) == {"too-big"}  # the others still evaluated
    assert "INFEASIBLE" in val.report("t", ev, {}, [])


def test_not_expressible_partitions(tmp_path):
    entries = yaml.safe_load(SMALL.read_text())
    wrong_count = {**copy.deepcopy(entries[0]), "id": "count", "num_gpus": 16}
    heads = {
        **copy.deepcopy(entries[2]),
        "id": "heads",
        "num_gpus": 3,
        "partition": {"tp": 3},
        "batch": 1,
        "measured": {"step_time": 0.01},
    }
    unknown = {**copy.deepcopy(entries[0]), "id": "unknown", "hardware": "h900"}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump([wrong_count, heads, unknown]))
    _, reasons, _ = val.resolve_all(val.load_measurements(path))
    assert reasons["unknown"] == "hardware 'h900' is not in the catalogue (conf/hardware/)"  # strict=true: an error
    assert reasons["count"] == "partition uses tp*dp_attn*kvp*pp = 8 GPUs but num_gpus = 16"
    assert reasons["heads"].startswith("partition not legal for llama-3-70b: Partition.tp = 3 is invalid")


@pytest.mark.skipif(
    not SHARED.is_dir(),
    reason="../shared/reference is not beside the clone (the newest published "
    "files live there; the vendored copies are checked by test_vendored_files_load)",
)
def test_published_files_load():
    """The newest published files load, and the copies vendored into the package (what every other
    test, study and default reads) are byte-identical to them: a stale copy fails here."""
    for path in (SHARED / "serving" / "measurements.yaml", SHARED / "peers" / "aic-silicon.yaml"):
        entries = val.load_measurements(path)
        assert len({e.id for e in entries}) == len(entries) > 0
    published = [p for p in SHARED.rglob("*") if p.is_file() and (VENDORED / p.relative_to(SHARED)).is_file()]
    assert len(published) >= 6  # serving: measurements, README, aic-silicon train + README; peers: cases, aic-silicon
    for p in published:
        assert (VENDORED / p.relative_to(SHARED)).read_bytes() == p.read_bytes(), f"vendor {p} again"


def test_vendored_files_load():
    """The copies in the package (the validate default, the peers study's inputs) load alone."""
    from omegaconf import OmegaConf

    default = OmegaConf.load(ROOT / "conf" / "validate.yaml").measurements
    assert (ROOT / default).resolve() == (VENDORED / "serving" / "measurements.yaml").resolve()
    for path in (VENDORED / "serving" / "measurements.yaml", VENDORED / "peers" / "aic-silicon.yaml"):
        entries = val.load_measurements(path)
        assert len({e.id for e in entries}) == len(entries) > 0
    assert (VENDORED / "peers" / "cases.md").read_text().count("\n| ") > 38


def test_serving_block_is_read():
    """A serving block is kept with SI/token values; concurrency and ttft may be null."""
    m = check_entry(
        Path("m.yaml"), 0, _with(serving={"mode": "agg", "isl": 1024, "osl": 2048, "concurrency": 64, "ttft": 0.142})[0]
    )
    assert m.serving == {"mode": "agg", "isl": 1024.0, "osl": 2048.0, "concurrency": 64, "ttft": 0.142}
    m = check_entry(Path("m.yaml"), 0, _with(serving={"mode": "disagg", "isl": 2000, "osl": 100, "concurrency": None})[0])
    assert m.serving["concurrency"] is None and m.serving["ttft"] is None
    assert check_entry(Path("m.yaml"), 0, _base()).serving is None


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the entry and the field, exit code 2, no output files


def _base():
    return yaml.safe_load(SMALL.read_text())[0]


def _with(**changes):
    e = _base()
    e.update(changes)
    return [e]


def _without(field):
    e = _base()
    del e[field]
    return [e]


BAD = {  # case: (file content: a YAML string or a list of entries, text the error names, extra CLI args)
    "malformed": ("- id: x\n  model: [deepseek-v3\n", ["malformed YAML", ".yaml:3"], []),
    "not-a-list": ("id: x\nmodel: deepseek-v3\n", ["top level", "list"], []),
    "duplicate-id": ([_base(), _base()], ["'small-dsv3-h200-tp8-b64'", "duplicate"], []),
    "unknown-field": (_with(colour="red"), ["'small-dsv3-h200-tp8-b64'", "colour is not a known field"], []),
    "missing-field": (_without("context"), ["'small-dsv3-h200-tp8-b64'", "context is missing"], []),
    "unknown-model": (
        _with(model="deepseek-v9"),
        ["'small-dsv3-h200-tp8-b64'", "model = 'deepseek-v9'", "deepseek-v3"],
        ["strict=true"],
    ),
    "unknown-hardware": (_with(hardware="h900"), ["'small-dsv3-h200-tp8-b64'", "hardware = 'h900'", "h200"], ["strict=true"]),
    "bad-dtype": (
        _with(dtypes={"weights": "fp7", "kv": "bf16", "activations": "fp8"}),
        ["'small-dsv3-h200-tp8-b64'", "dtypes.weights = 'fp7'", "bf16"],
        [],
    ),
    "partition-key": (_with(partition={"tp": 8, "cp": 2}), ["'small-dsv3-h200-tp8-b64'", "partition.cp", "dp_attn"], []),
    "zero-gpus": (_with(num_gpus=0), ["'small-dsv3-h200-tp8-b64'", "num_gpus = 0", "> 0"], []),
    "negative-context": (_with(context=-5), ["'small-dsv3-h200-tp8-b64'", "context = -5"], []),
    "negative-figure": (_with(measured={"step_time": -0.03}), ["'small-dsv3-h200-tp8-b64'", "measured.step_time = -0.03"], []),
    "phase": (_with(phase="training"), ["'small-dsv3-h200-tp8-b64'", "phase = 'training'", "decode, prefill"], []),
    "batch-zero": (_with(batch=0), ["'small-dsv3-h200-tp8-b64'", "batch = 0", "max"], []),
    "batch-word": (_with(batch="lots"), ["'small-dsv3-h200-tp8-b64'", "batch = 'lots'", "max"], []),
    "batch-fraction": (_with(batch=2.5), ["'small-dsv3-h200-tp8-b64'", "batch = 2.5"], []),
    "mtp-incomplete": (_with(mtp={"draft_tokens": 3}), ["'small-dsv3-h200-tp8-b64'", "mtp.accepted is missing"], []),
    "mtp-too-many": (
        _with(mtp={"draft_tokens": 1, "accepted": 1.5}, measured={"step_time": 0.03}),
        ["'small-dsv3-h200-tp8-b64'", "mtp.accepted = 1.5", "draft_tokens = 1"],
        [],
    ),
    "no-figure": (
        _with(measured={"step_time": None, "tokens_per_s_per_user": None, "throughput_per_gpu": None}),
        ["'small-dsv3-h200-tp8-b64'", "measured", "at least one"],
        [],
    ),
    "inconsistent-user": (
        _with(measured={"step_time": 0.0325, "tokens_per_s_per_user": 40.0}),
        ["'small-dsv3-h200-tp8-b64'", "measured.tokens_per_s_per_user = 40.0", "measured.step_time", "+30.0 %", "2 %"],
        [],
    ),
    "inconsistent-gpu": (
        _with(measured={"tokens_per_s_per_user": 30.0, "throughput_per_gpu": 300.0}),
        ["'small-dsv3-h200-tp8-b64'", "measured.throughput_per_gpu = 300.0", "measured.tokens_per_s_per_user", "+25.0 %"],
        [],
    ),
    "inconsistent-mtp": (
        _with(mtp={"draft_tokens": 3, "accepted": 1.0}, measured={"step_time": 0.0325, "tokens_per_s_per_user": 30.77}),
        ["'small-dsv3-h200-tp8-b64'", "measured.tokens_per_s_per_user", "-50.0 %"],
        [],
    ),
    "serving-mode": (
        _with(serving={"mode": "split", "isl": 1024, "osl": 1024}),
        ["'small-dsv3-h200-tp8-b64'", "serving.mode = 'split'", "agg, disagg"],
        [],
    ),
    "serving-isl": (
        _with(serving={"mode": "agg", "isl": -1, "osl": 1024}),
        ["'small-dsv3-h200-tp8-b64'", "serving.isl = -1"],
        [],
    ),
    "serving-missing": (_with(serving={"mode": "agg", "isl": 1024}), ["'small-dsv3-h200-tp8-b64'", "serving.osl is missing"], []),
    "serving-key": (
        _with(serving={"mode": "agg", "isl": 1, "osl": 1, "qps": 3}),
        ["'small-dsv3-h200-tp8-b64'", "serving.qps"],
        [],
    ),
    "serving-concurrency": (
        _with(serving={"mode": "agg", "isl": 1, "osl": 1, "concurrency": 2.5}),
        ["'small-dsv3-h200-tp8-b64'", "serving.concurrency = 2.5", "integer"],
        [],
    ),
    "fit-constant": (
        _with(),
        ["calibration.free = 'warp_factor'", "hbm_efficiency"],
        ["fit=true", "calibration.free=[warp_factor]"],
    ),
    "fit-layer-latency-on-kernel-costs": (
        _with(),
        ["calibration.free = [hbm_efficiency", "accounting=realistic", "count them twice", "accounting=layered"],
        ["fit=true"],
    ),
    "serving-free": (
        SILICON_SMALL.read_text(),
        ["calibration.serving_free = 'warp_factor'", "hbm_efficiency"],
        ["fit=true", "calibration.serving_free=[warp_factor]"],
    ),
    "serving-profiled": (
        SILICON_SMALL.read_text(),
        ["calibration.serving_profiled = 'hbm_efficiency'", "request_overhead, warmup_share, sequence_latency"],
        ["fit=true", "calibration.serving_profiled=[hbm_efficiency]"],
    ),
    "serving-free-deleted": (
        SILICON_SMALL.read_text(),
        ["calibration.serving_free = None is invalid", "list of Accounting constant names"],
        ["fit=true", "~calibration.serving_free"],
    ),
}


def _bad_args(case, tmp_path):
    content, _, args = BAD[case]
    path = tmp_path / case / "m.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return [f"measurements={path}", f"out={tmp_path / case / 'out'}", f"hydra.run.dir={tmp_path / case / 'hydra'}", *args]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every case through ``python -m moejax.validate``, each in its own process, one interpreter
    start for all (tests/cli_fork.py)."""
    tmp = tmp_path_factory.mktemp("bad")
    procs = forked("moejax.validate", [_bad_args(case, tmp) for case in BAD], timeout=600)
    return {case: (proc, tmp / case / "out", tmp / case) for case, proc in zip(BAD, procs, strict=True)}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, bad_runs):
    proc, out, case_dir = bad_runs[case]
    assert proc.returncode == 2, (proc.stdout[-500:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in BAD[case][1]:
        assert text in lines[0], lines[0]
    assert not out.exists() and not (case_dir / "hydra").exists() and proc.stdout == ""


def test_consistency_holds_within_tolerance(tmp_path):
    """Figures 1.5 % apart are consistent (the README's 2 % rule); a `max` batch checks only the per-user pair."""
    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump(
            _with(measured={"step_time": 0.0325, "tokens_per_s_per_user": 31.24, "throughput_per_gpu": 250.0})
            + [{**_base(), "id": "b", "batch": "max", "measured": {"tokens_per_s_per_user": 30.0, "throughput_per_gpu": 1e6}}]
        )
    )
    assert [m.id for m in val.load_measurements(path)] == ["small-dsv3-h200-tp8-b64", "b"]


# ------------------------------------------------------------------------------------------------
# the fit: synthetic measurements generated by the model itself

SYNTHETIC = [  # model, hardware, partition, dtypes (weights, kv), phase, batch, context, figure
    ("llama-3-70b", "h100-sxm", {"tp": 8}, ("bf16", "bf16"), "decode", 1, 1024, "step_time"),
    ("llama-3-70b", "h100-sxm", {"tp": 8}, ("bf16", "bf16"), "decode", 256, 2048, "throughput_per_gpu"),
    ("llama-3-70b", "h100-sxm", {"tp": 8}, ("bf16", "bf16"), "prefill", 4, 4096, "throughput_per_gpu"),
    ("deepseek-v3", "h200", {"tp": 8}, ("fp8", "bf16"), "decode", 1, 4096, "step_time"),
    ("deepseek-v3", "h200", {"dp_attn": 8, "ep": 8}, ("fp8", "bf16"), "decode", 1024, 2048, "throughput_per_gpu"),
    ("mixtral-8x22b", "h100-sxm", {"tp": 8, "ep": 8}, ("bf16", "bf16"), "decode", 64, 4096, "step_time"),
    ("qwen3-235b-a22b", "b200", {"tp": 4}, ("fp8", "fp8"), "prefill", 2, 8192, "throughput_per_gpu"),
    ("llama-3-405b", "h200", {"tp": 8}, ("fp8", "bf16"), "decode", 32, 8192, "tokens_per_s_per_user"),
    ("llama-3-70b", "mi300x", {"tp": 8}, ("bf16", "bf16"), "decode", 1, 2048, "step_time"),
    ("llama-3-70b", "mi300x", {"tp": 8}, ("bf16", "bf16"), "prefill", 2, 4096, "throughput_per_gpu"),
    ("deepseek-v3", "mi355x", {"tp": 8}, ("fp8", "bf16"), "decode", 128, 2048, "throughput_per_gpu"),
    ("mixtral-8x22b", "mi300x", {"tp": 8}, ("bf16", "bf16"), "decode", 8, 1024, "step_time"),
]
TRUTH = {"hbm_efficiency": 0.8, "flops_efficiency": 0.6, "layer_latency": 20e-6}
TRUTH_AMD = {"hbm_efficiency": 0.65, "flops_efficiency": 0.45, "layer_latency": 20e-6}


def synthetic_entries() -> list[dict]:
    """``SYNTHETIC`` as measurement-file entries (measured figure 1.0: a placeholder)."""
    return [
        {
            "id": f"syn-{i}",
            "source": "synthetic",
            "firmness": "exact",
            "model": m,
            "hardware": hw,
            "num_gpus": int(np.prod([v for k, v in part.items() if k != "ep"])),
            "partition": part,
            "dtypes": {"weights": w, "kv": kv, "activations": "bf16"},
            "phase": phase,
            "batch": b,
            "context": ctx,
            "measured": {fig: 1.0},
        }
        for i, (m, hw, part, (w, kv), phase, b, ctx, fig) in enumerate(SYNTHETIC)
    ]


def synthetic_points(truth_by_family: dict) -> list:
    """Points whose measured figure is the model's own prediction at ``truth_by_family[family]``."""
    entries = [check_entry(Path("synthetic"), i, r) for i, r in enumerate(synthetic_entries())]
    points, reasons, _ = val.resolve_all(entries)
    assert not reasons and len(points) == len(SYNTHETIC)
    acc = [Accounting(**truth_by_family.get(p.family, truth_by_family.get("all", {}))) for p in points]
    ev = val.evaluate(points, stack(acc))
    assert ev.feasible.all()
    return [
        dataclasses.replace(p, measurement=dataclasses.replace(p.measurement, measured={p.measurement.figure: float(v)}))
        for p, v in zip(points, ev.predicted)
    ]


def test_fit_recovers_known_constants():
    """Global fit: the three constants come back within 1e-3 relative from the default start, the
    in-sample and leave-one-out predictions within 1e-3 of the synthetic measurements."""
    points = synthetic_points({"all": TRUTH})
    res = val.fit(points, Accounting(), val.FitSettings(free=tuple(TRUTH), steps=400))
    for k, v in TRUTH.items():
        assert res.constants["all"][k] == pytest.approx(v, rel=1e-3), (k, res.constants)
    measured = np.array([p.measurement.value for p in points])
    assert res.used.all() and not res.unconstrained
    np.testing.assert_allclose(res.in_sample, measured, rtol=1e-3)
    np.testing.assert_allclose(res.loo, measured, rtol=1e-3)
    stats = res.stats(measured)
    assert stats["loo_p90_abs_log_ratio"] < 1e-3 and stats["in_sample_median_abs_log_ratio"] < 1e-3


def test_fit_per_family_and_loo_is_out_of_sample():
    """Per family: NVIDIA and AMD get their own constants back (1e-2 relative: 4 AMD points for 2
    constants). LOO is out of sample: with one point corrupted by x2, the in-sample fit bends
    towards it while its LOO prediction stays at the clean value."""
    free = ("hbm_efficiency", "flops_efficiency")
    points = synthetic_points({"NVIDIA": TRUTH, "AMD": TRUTH_AMD})
    settings = val.FitSettings(free=free, per_family=True)
    fixed = Accounting(layer_latency=20e-6)
    res = val.fit(points, fixed, settings)
    assert res.families == ["AMD", "NVIDIA"]
    for fam, truth in (("NVIDIA", TRUTH), ("AMD", TRUTH_AMD)):
        for k in free:
            assert res.constants[fam][k] == pytest.approx(truth[k], rel=1e-2), (fam, k, res.constants)
    clean = points[0].measurement.value
    bad = [
        dataclasses.replace(points[0], measurement=dataclasses.replace(points[0].measurement, measured={"step_time": 2 * clean}))
    ]
    res = val.fit(bad + points[1:], fixed, settings)
    assert res.loo[0] == pytest.approx(clean, rel=2e-2)
    assert res.in_sample[0] > 1.05 * clean


def test_fit_cli_writes_accounting_yaml(tmp_path):
    """``fit=true`` end to end on the synthetic measurements of test_fit_recovers_known_constants
    written as a file, with its free constants and steps (in this process: the fit is the same
    compiled program): every point fitted, leave-one-out per point, the constants recovered, the
    fitted accounting YAML written and read back by the catalogue loader."""
    entries = synthetic_entries()
    for e, p in zip(entries, synthetic_points({"all": TRUTH}), strict=True):
        e["measured"] = {p.measurement.figure: p.measurement.value}
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    out = tmp_path / "out"
    args = [f"measurements={path}", "accounting=sol", f"out={out}", "fit=true", "compilation_cache=null"]
    args += [f"calibration.free=[{','.join(TRUTH)}]", "calibration.steps=400"]
    code, stdout, stderr = run_main("moejax.validate", args, hydra_dir=tmp_path / "hydra")
    assert code == 0, stderr[-2000:]
    record = json.loads(stdout.strip().splitlines()[-1])
    fit = record["fit"]
    assert set(fit["loo"]) == set(record["predicted"]) and fit["n_points"] == len(SYNTHETIC)
    assert {"loo_median_abs_log_ratio", "loo_p90_abs_log_ratio", "in_sample_median_abs_log_ratio"} <= set(fit)
    for k, v in TRUTH.items():
        assert fit["constants"]["all"][k] == pytest.approx(v, rel=1e-3), (k, fit["constants"])
    written = yaml.safe_load((out / "layered.yaml").read_text())
    assert written["provenance"]["n_points"] == len(SYNTHETIC) and "date" in written["provenance"]
    assert written["hbm_efficiency"]["value"] == pytest.approx(fit["constants"]["all"]["hbm_efficiency"])
    assert written["mode"] == "layered"  # a global fit: the previous release's kind of preset
    reread = accounting_from_mapping(written, "layered.yaml")  # the catalogue loader reads it back
    assert reread.hbm_efficiency == pytest.approx(fit["constants"]["all"]["hbm_efficiency"])
    assert reread.layer_latency == pytest.approx(fit["constants"]["all"]["layer_latency"])


def test_accounting_catalogue():
    assert load_accounting("sol") == Accounting()
