"""Launch commands (moejax.analysis.launch, python -m moejax.point ... launch=) and what-if
multipliers (what_if.FIELD=FACTOR): every flag emitted is one conf/launch.yaml documents for that
engine, with the right values; partitions an engine cannot express print their line; what-if
scales the named field and refuses unknown fields and non-positive factors in one line."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from moejax import load_hardware
from moejax.analysis.launch import ENGINES, Deployment, engine_table, launch, model_path
from moejax.analysis.point import WHAT_IF_FIELDS, PointQuery, explain, scaled
from moejax.catalogue import load_accounting
from moejax.engine.grid import PartitionSpace
from moejax.physics.specs import Accounting, HardwareSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
DSV3 = "deepseek-ai/DeepSeek-V3"


def degrees(**kw) -> dict:
    return {"tp": 1, "ep": 1, "pp": 1, "dp": 1, "dp_attn": 1, "kvp": 1, "kv_mode": 0, "dense_tp": 0, "redundant_experts": 0} | kw


def parse(engine: str, text: str) -> tuple[dict, dict, list[str]]:
    """(flags -> value or None, options YAML, not-expressible lines) of a launch text; checks the
    command words and that every flag and option is documented for ``engine``."""
    lines = text.splitlines()
    missing = [ln for ln in lines if ln.startswith("# not expressible in ")]
    options = {}
    if "<<'EOF'" in text:
        start, end = next(i for i, ln in enumerate(lines) if ln.endswith("<<'EOF'")), lines.index("EOF")
        options = yaml.safe_load("\n".join(lines[start + 1 : end]))
    command = [ln for ln in lines if not ln.startswith("#")][-1]
    words = shlex.split(command)
    e = engine_table()[engine]
    head = e["command"].split()
    assert words[: len(head)] == head and not words[len(head)].startswith("--"), command
    flags, i = {}, len(head) + 1
    while i < len(words):
        flag = words[i]
        assert flag in e["flags"], f"{flag} is not documented for {engine} in conf/launch.yaml"
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
        flags[flag] = value
        i += 2 if value is not None else 1
    flat = {
        f"{k}.{kk}" if isinstance(v, dict) else k for k, v in options.items() for kk in (v if isinstance(v, dict) else [None])
    }
    assert flat <= set(e.get("options", {})), flat
    return flags, options, missing


def test_every_engine_documents_every_flag_with_a_url():
    for engine in ENGINES:
        e = engine_table()[engine]
        assert e["version"] and all(str(u).startswith("https://") for u in [*e["flags"].values(), *e.get("options", {}).values()])


def test_vllm_wide_ep_with_mtp_and_eplb():
    d = Deployment(DSV3, degrees(tp=1, ep=8, dp_attn=8, dense_tp=1, redundant_experts=32), batch=512, kv_dtype="fp8", mtp=1)
    flags, _, missing = parse("vllm", launch("vllm", d))
    assert flags == {
        "--tensor-parallel-size": "1",
        "--pipeline-parallel-size": "1",
        "--data-parallel-size": "8",
        "--enable-expert-parallel": None,
        "--enable-eplb": None,
        "--eplb-config": '{"num_redundant_experts": 32}',
        "--max-num-seqs": "64",
        "--kv-cache-dtype": "fp8",
        "--speculative-config": '{"method": "mtp", "num_speculative_tokens": 1}',
    }
    assert missing == []


def test_vllm_cannot_split_experts_ep_by_tp_nor_kvp():
    text = launch("vllm", Deployment(DSV3, degrees(tp=8, ep=4, kvp=2, kv_mode=1, dp=2), batch=64))
    flags, _, missing = parse("vllm", text)
    assert "--enable-expert-parallel" not in flags and flags["--tensor-parallel-size"] == "8" and flags["--max-num-seqs"] == "64"
    assert any("EP4 x TP2" in m for m in missing) and any("KVP (Helix)2" in m for m in missing)
    assert any("dense FFN and LM head at TP16" in m for m in missing)  # dense_tp 0: the whole group tp·kvp
    assert "# 2 replicas" in text


def test_sglang_dp_attention_ep_mtp_and_disaggregation():
    d = Deployment(
        DSV3, degrees(tp=1, ep=16, dp_attn=16, pp=1, redundant_experts=16), batch=1024, kv_dtype="fp8", mtp=2, role="decode"
    )
    flags, _, missing = parse("sglang", launch("sglang", d))
    assert flags == {
        "--tp-size": "16",
        "--pp-size": "1",
        "--dp-size": "16",
        "--enable-dp-attention": None,
        "--ep-size": "16",
        "--enable-eplb": None,
        "--ep-num-redundant-experts": "16",
        "--max-running-requests": "1024",
        "--kv-cache-dtype": "fp8_e4m3",
        "--speculative-algorithm": "EAGLE",
        "--speculative-num-steps": "2",
        "--speculative-eagle-topk": "1",
        "--speculative-num-draft-tokens": "3",
        "--disaggregation-mode": "decode",
    }
    assert missing == []


def test_sglang_dense_tp_and_kv_dtype_it_cannot_store():
    flags, _, missing = parse(
        "sglang", launch("sglang", Deployment(DSV3, degrees(tp=2, dp_attn=4, ep=8, dense_tp=2), batch=10, kv_dtype="nvfp4"))
    )
    assert flags["--tp-size"] == "8" and "--kv-cache-dtype" not in flags
    assert any("dense FFN and LM head at TP2" in m for m in missing) and any("KV cache dtype nvfp4" in m for m in missing)


def test_trtllm_attention_dp_options_yaml():
    d = Deployment(DSV3, degrees(tp=1, ep=8, dp_attn=8, pp=2), batch=256, kv_dtype="fp8", mtp=3, role="prefill")
    flags, options, missing = parse("trtllm", launch("trtllm", d))
    assert flags == {
        "--tp_size": "8",
        "--pp_size": "2",
        "--ep_size": "8",
        "--max_batch_size": "32",
        "--extra_llm_api_options": "extra-llm-api-options.yaml",
    }
    assert options == {
        "enable_attention_dp": True,
        "kv_cache_config": {"dtype": "fp8"},
        "speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": 3},
        "cache_transceiver_config": {"backend": "DEFAULT"},
    }
    assert missing == []


def test_trtllm_unsupported_lines():
    text = launch("trtllm", Deployment(DSV3, degrees(tp=2, dp_attn=4, ep=8, redundant_experts=32, kvp=2, kv_mode=2), batch=64))
    flags, options, missing = parse("trtllm", text)
    assert flags["--tp_size"] == "8" and options["enable_attention_dp"] is True
    assert any("attention TP2 x DP4" in m for m in missing) and any("32 redundant experts" in m for m in missing)
    assert any("CP2" in m for m in missing)


def test_dense_model_and_bad_engine():
    flags, _, _ = parse("vllm", launch("vllm", Deployment("meta-llama/Meta-Llama-3-70B", degrees(tp=8), batch=32, moe=False)))
    assert flags["--tensor-parallel-size"] == "8" and "--enable-expert-parallel" not in flags
    with pytest.raises(SpecError, match="launch = 'tgi' is invalid: allowed vllm, sglang, trtllm"):
        launch("tgi", Deployment(DSV3, degrees(), batch=1))
    assert model_path("deepseek-v3") == DSV3 and model_path("gpt-4-rumoured").startswith("<path to")


def test_what_if_fields_are_spec_fields_and_the_config_lists_them():
    spec_fields = {f.name for f in dataclasses.fields(HardwareSpec)} | {f.name for f in dataclasses.fields(Accounting)}
    assert set(WHAT_IF_FIELDS) <= spec_fields
    hw_quantities = {
        f.name for f in dataclasses.fields(HardwareSpec) if f.name not in ("fabric", "island_size", "torus_dims", "stack")
    }
    assert set(WHAT_IF_FIELDS) == hw_quantities | {f.name for f in dataclasses.fields(Accounting) if f.type != "str"} - {
        "integer_batch",
        "layer_patterns",
    }  # every quantity and constant, not the counts or switches
    import moejax.point  # noqa: F401 - stores the what_if schema the point config's defaults list names

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        assert list(compose("point").what_if) == list(WHAT_IF_FIELDS)  # the command's config lists them, from the specs
    hw, acc = scaled(load_hardware("h100-sxm"), load_accounting("realistic"), {"hbm_bw": 2.0, "overlap": 0.5})
    assert float(hw.hbm_bw) == 2 * 3.35e12 and float(acc.overlap) == 0.5 * float(load_accounting("realistic").overlap)
    for bad, match in (
        ({"fabric": 2.0}, "what_if.fabric is not a known field: allowed hbm_bytes"),
        ({"hbm_bw": 0.0}, "what_if.hbm_bw = 0.0 is invalid: a factor > 0"),
    ):
        with pytest.raises(SpecError, match=match):
            PointQuery(
                model="mixtral-8x7b", hardware="h100-sxm", num_gpus=8, accounting=load_accounting(), context=4096.0, what_if=bad
            )


def test_what_if_more_bandwidth_is_never_slower():
    space = PartitionSpace(tp=(1, 2, 4, 8), ep=(1, 8), pp=(1,), dp_attn=(1, 2), kvp=(1,), dense_tp=(1, 8))
    q = PointQuery(
        model="mixtral-8x7b",
        hardware="h100-sxm",
        num_gpus=8,
        accounting=load_accounting("realistic"),
        context=4096.0,
        batches=(1.0, 64.0),
        levels=(10.0,),
        space=space,
    )
    base, fast = explain(q), explain(dataclasses.replace(q, what_if={"hbm_bw": 2.0}))
    assert fast["best"]["throughput_per_gpu"] >= base["best"]["throughput_per_gpu"] > 0


def _cli(tmp_path, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.point",
            "model=mixtral-8x7b",
            "hardware=h100-sxm",
            "num_gpus=8",
            *args,
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_launch_and_what_if(tmp_path):
    proc = _cli(
        tmp_path, "context=4096", "what_if.hbm_bw=2", "launch=sglang", "batches=[1,64]", "partitions.pp=[1]", "partitions.kvp=[1]"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    section = out[out.index("what if hbm_bw x 2") :]
    row = next(ln for ln in section.splitlines() if ln.startswith("tokens/s per GPU")).split()
    base, variant, ratio = float(row[-3]), float(row[-2]), float(row[-1])
    assert variant >= base and ratio == pytest.approx(variant / base, abs=2e-3)
    command = next(ln for ln in out[out.index("launch (sglang)") :].splitlines() if ln.startswith("python -m sglang"))
    assert "--model-path mistralai/Mixtral-8x7B-v0.1" in command


@pytest.mark.parametrize(
    "arg, expect",
    [
        ("what_if.nope=2", "error: what_if.nope is not a known field: allowed hbm_bytes, hbm_bw"),
        ("what_if.hbm_bw=-1", "error: what_if.hbm_bw = -1 is invalid: a factor > 0 (allowed fields hbm_bytes"),
        ("launch=tgi", "error: launch = 'tgi' is invalid: allowed vllm, sglang, trtllm"),
    ],
)
def test_cli_bad_what_if_and_launch(tmp_path, arg, expect):
    proc = _cli(tmp_path, "context=4096", arg)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(expect), proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run").exists()
