"""AIConfigurator's silicon CSV: every column mapped onto a moejax benchmark, malformed rows refused
with one line naming the row and the column, and ``python -m moejax.validate`` on a CSV end to end.

tests/data/silicon-small.csv holds five rows copied unchanged from
shared/reference/serving/aic-silicon/train.csv (AIConfigurator's silicon sample, Apache-2.0)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_runs import run_main

from moejax.analysis.validation import benchmarks, silicon
from moejax.catalogue import available
from moejax.physics.specs import SpecError

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "data" / "silicon-small.csv"
MODELS = set(available("model"))
AGG = "2026_04_06_llama_3_1_70b_b200_sxm_trtllm_fp4_agg_1024x1024_c64_tp1_ep1_261"
DISAGG = "dsr1_gb200_trtllm_fp8_disagg_1024x8192_c2048_cfg375"
INCOMPLETE = "2026_03_25_deepseek_r1_gb200_trtllm_fp4_disagg_1024x8192_c2048_tp4_0_ep4_0_352"


@pytest.fixture(scope="module")
def rows():
    return {r.id: r for r in silicon.load_silicon(SMALL, MODELS)}


def test_agg_row_mapping(rows):
    r = rows[AGG]
    assert (r.backend, r.model_path, r.model, r.hardware, r.mode) == (
        "trtllm",
        "meta-llama/Llama-3.1-70B",
        "llama-3.1-70b",
        "b200",
        "agg",
    )
    assert (r.isl, r.osl, r.concurrency) == (1024.0, 1024.0, 64)
    assert r.dtypes == {
        "weights": "nvfp4",
        "experts": "nvfp4",
        "gemm": "fp4",
        "kv": "fp8",
        "dispatch": "fp8",
        "activations": "bf16",
    }
    assert r.decode == silicon.Pool(workers=1, tp=1, pp=1, dp_attn=1, moe_tp=1, moe_ep=1, cap=64) and r.prefill is None
    assert r.ttft == pytest.approx(float(_raw(AGG)["silicon_ttft_ms"]) / 1e3, rel=1e-15)
    assert r.tpot == pytest.approx(float(_raw(AGG)["silicon_tpot_ms"]) / 1e3, rel=1e-15)
    assert r.token_budget == silicon.TOKEN_BUDGET["trtllm"] and not r.unexpressible
    assert r.groups == {"backend": "trtllm", "system": "b200", "model": "meta-llama/Llama-3.1-70B", "mode": "agg"}


def test_disagg_row_mapping(rows):
    raw, r = _raw(DISAGG), rows[DISAGG]
    for pool, prefix in ((r.prefill, "prefill_"), (r.decode, "decode_")):
        assert pool.workers == int(raw[f"{prefix}num_workers"]) and pool.tp == int(raw[f"{prefix}tp_size"])
        assert pool.moe_ep == int(raw[f"{prefix}moe_ep_size"]) and pool.pp == int(raw[f"{prefix}pp_size"])
        assert pool.cap == int(raw[f"{prefix}batch_size"]) * pool.dp_attn
    assert r.model == "deepseek-v3" and r.concurrency == 2048 and not r.unexpressible  # DeepSeek-V3 as published
    assert "worker counts or batch sizes not published" in rows[INCOMPLETE].unexpressible


def test_sglang_agg_rows_run_prefill_first(rows, tmp_path):
    """SGLang prefills waiting prompts before decoding: its aggregated rows are benchmarks in
    lockstep (``prefill_first`` 1); TensorRT-LLM's and every disaggregated row are not."""
    sglang = [dict(_raw(AGG), backend="sglang", id="as-sglang"), dict(_raw(DISAGG), backend="sglang", id="as-sglang-disagg")]
    read = {r.id: r for r in silicon.load_silicon(_write(tmp_path, sglang), MODELS)}
    assert (read["as-sglang"].prefill_first, read["as-sglang-disagg"].prefill_first) == (1.0, 0.0)
    assert (rows[AGG].prefill_first, rows[DISAGG].prefill_first) == (0.0, 0.0)
    cases, _ = benchmarks.resolve_all([read["as-sglang"], rows[AGG]])
    assert [float(c.bench.prefill_first) for c in cases] == [1.0, 0.0]


def test_vllm_keeps_a_bf16_cache_and_mxfp4_experts_run_bf16_gemms():
    assert silicon.dtypes("vllm", "fp8", "fp8")["kv"] == "bf16"
    assert silicon.dtypes("trtllm", "", "")["kv"] == "bf16"
    assert silicon.dtypes("sglang", "bf16", "w4a16_mxfp4") == {
        "weights": "bf16",
        "experts": "mxfp4",
        "gemm": "bf16",
        "kv": "bf16",
        "dispatch": "bf16",
        "activations": "bf16",
    }


def test_agg_concurrency_spread_over_workers(tmp_path):
    """Concurrency a whole multiple of batch_size x attention_dp: that many workers."""
    raw = {
        **_raw(AGG),
        "silicon_data_source": _raw(AGG)["silicon_data_source"].replace("concurrency=64", "concurrency=256"),
    }
    assert silicon.read_row(tmp_path, 2, raw, MODELS).decode.workers == 4


VENDORED = ROOT / "moejax" / "data" / "reference" / "serving" / "aic-silicon" / "train.csv"


def test_expert_parallel_multiplied_into_the_attention_split_worked_example():
    """The docstring's cases on an 8-GPU node; a 72-GPU island keeps tp 64 as written."""
    pool = lambda tp, dp, g, batch: silicon.Pool(1, tp, 1, dp, g, g, batch * dp)  # noqa: E731
    assert silicon.expert_parallel_multiplied_in(pool(64, 1, 8, 32), 8) == silicon.Pool(1, 8, 1, 1, 1, 8, 32)
    assert silicon.expert_parallel_multiplied_in(pool(1, 16, 4, 16), 8) == silicon.Pool(1, 1, 1, 4, 1, 4, 256)
    assert silicon.expert_parallel_multiplied_in(pool(4, 1, 2, 8), 8) == pool(4, 1, 2, 8)
    assert silicon.expert_parallel_multiplied_in(pool(64, 1, 8, 32), 72) == pool(64, 1, 8, 32)


@pytest.mark.parametrize(
    "written, physical",
    [
        (
            "2026_04_06_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c4_tp8_ep8_1015",  # tp 64, moe 8 x 8
            "2026_03_25_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c4_tp8_0_ep8_0_298",  # tp 8, moe 1 x 8
        ),
        (
            "2026_04_06_deepseek_r1_b200_sxm_trtllm_fp4_agg_1024x1024_c256_tp4_ep4_946",  # DP 16, moe 4 x 4, batch 16
            "2026_03_25_deepseek_r1_b200_sxm_trtllm_fp4_agg_1024x1024_c256_tp4_0_ep4_0_990",  # DP 4, moe 1 x 4, batch 64
        ),
    ],
)
def test_a_row_written_with_ep_multiplied_in_reads_as_its_copy(written, physical):
    """Two rows of the vendored file with the same TPOT and TTFT to the last digit, one written
    with the EP degree multiplied into the attention split: both read as the same worker."""
    raw = {r["id"]: r for r in csv.DictReader(open(VENDORED, newline="")) if r["id"] in (written, physical)}
    assert raw[written]["silicon_tpot_ms"] == raw[physical]["silicon_tpot_ms"]
    a, b = (silicon.read_row(VENDORED, 2, raw[i], MODELS) for i in (written, physical))
    assert a.decode == b.decode and a.decode.moe_tp == 1 and a.decode.tp * a.decode.dp_attn == a.decode.moe_ep


BAD = {  # column: bad value, text the error names
    "isl": ("abc", "a number >= 1"),
    "backend": ("tgi", "'trtllm'"),
    "mode": ("split", "'agg', 'disagg'"),
    "moe_quant_mode": ("fp3", "'nvfp4'"),
    "silicon_tpot_ms": ("-1", ">= 1e-09"),
    "tp_size": ("0", "an integer >= 1"),
    "silicon_ttft_ms": ("", "required"),
}


@pytest.mark.parametrize("column", list(BAD))
def test_malformed_row_is_one_line(column, tmp_path):
    value, allowed = BAD[column]
    path = _write(tmp_path, [{**_raw(AGG), column: value}])
    with pytest.raises(SpecError) as e:
        silicon.load_silicon(path, MODELS)
    msg = str(e.value)
    assert "\n" not in msg and f"row '{AGG}'" in msg and f"{column} = {value!r}" in msg and allowed in msg


def test_missing_column_and_duplicate_id(tmp_path):
    with open(SMALL, newline="") as f:
        header = next(csv.reader(f))
    path = tmp_path / "cut.csv"
    path.write_text(",".join(c for c in header if c != "osl") + "\n")
    with pytest.raises(SpecError, match="column 'osl' is missing"):
        silicon.load_silicon(path, MODELS)
    with pytest.raises(SpecError, match=f"row '{AGG}': id is invalid: duplicate"):
        silicon.load_silicon(_write(tmp_path, [_raw(AGG), _raw(AGG)]), MODELS)


def test_recognised_by_header(tmp_path):
    assert silicon.is_silicon_csv(SMALL)
    assert not silicon.is_silicon_csv(ROOT / "tests" / "data" / "validate-small.yaml")


def test_cli_on_a_silicon_csv(tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = _cli(f"measurements={SMALL}", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}")
    assert code == 0, stderr[-2000:]
    record = json.loads(stdout.strip().splitlines()[-1])
    assert record["n"] == 5 and record["evaluated"] == 4 and set(record["not_expressible"]) == {INCOMPLETE}
    for i, p in record["predicted"].items():
        assert p["tpot"] > 0 and p["ttft"] > 0 and p["throughput_per_gpu"] > 0, i
        assert p["tokens_per_s_per_user"] == pytest.approx(1 / p["tpot"], rel=1e-9)
    assert record["groups"][0]["group"] == "all" and record["groups"][0]["n"] == 4
    assert "TPOT median" in stdout and INCOMPLETE in stdout
    assert (out / "serving.csv").is_file() and json.loads((out / "summary.json").read_text())["n"] == 5


def test_cli_refuses_a_malformed_csv(tmp_path):
    path = _write(tmp_path, [{**_raw(AGG), "osl": "-3"}])
    out = tmp_path / "out"
    code, stdout, stderr = _cli(f"measurements={path}", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}")
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "osl = '-3'" in lines[0]
    assert not out.exists() and not (tmp_path / "hydra").exists()


def test_predictions_match_the_physics(rows):
    """The CSV path predicts each row with moejax.physics.served at the row's own deployment."""
    import jax

    from moejax.catalogue import load_accounting
    from moejax.physics.served import aggregated

    cases, _ = benchmarks.resolve_all(list(rows.values()))
    acc = load_accounting("realistic")
    pred = benchmarks.predict(cases, acc)
    i = next(j for j, c in enumerate(cases) if c.row.id == AGG)
    c = cases[i]
    direct = jax.jit(aggregated)(c.model, c.hardware, c.decode, c.bench, acc)
    assert pred["tpot"][i] == pytest.approx(float(direct.tpot), rel=1e-6)
    assert pred["ttft"][i] == pytest.approx(float(direct.ttft), rel=1e-6)


def _raw(row_id: str) -> dict:
    with open(SMALL, newline="") as f:
        return next(r for r in csv.DictReader(f) if r["id"] == row_id)


def _write(tmp_path: Path, raws: list[dict]) -> Path:
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(raws[0]))
        w.writeheader()
        w.writerows(raws)
    return path


def _cli(*args):
    """``python -m moejax.validate *args`` run in this process (cli_runs.run_main): (exit code,
    stdout, stderr); its predictions are test_predictions_match_the_physics' compiled program."""
    return run_main("moejax.validate", [*args, "compilation_cache=null"])


def test_partition_reads_moe_columns_only_for_moe_models():
    """A dense model's MoE columns (published as 1 x 1 beside tp 4) are not read; an MoE model's
    experts must span its attention GPUs."""
    from moejax import load_model

    pool = silicon.Pool(workers=1, tp=4, pp=1, dp_attn=1, moe_tp=1, moe_ep=1, cap=8)
    p = benchmarks.partition(load_model("qwen3-32b"), pool)
    assert (float(p.tp), float(p.ep), float(p.dp_attn)) == (4.0, 1.0, 1.0)
    with pytest.raises(SpecError, match="moe_tp x moe_ep = 1 differs from tp x attention_dp = 4"):
        benchmarks.partition(load_model("qwen3-235b-a22b"), pool)
    dsv3 = benchmarks.partition(load_model("deepseek-v3"), silicon.Pool(1, 1, 1, 8, 1, 8, 64))
    assert (float(dsv3.ep), float(dsv3.dp_attn), float(dsv3.redundant_experts)) == (8.0, 8.0, 0.0)
