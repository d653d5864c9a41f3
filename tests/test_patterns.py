"""Per-layer attention patterns (sliding, chunked, sparse top-k, linear) and the 2025 MoE catalogue entries.

Kernel identities on random points, hypothesis properties of the KV accounting, hand-checked KV bytes,
published parameter counts, Hugging Face config.json import, and one-line errors for bad patterns.
"""

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from points import random_point, random_prefill_point

import moejax
from moejax import Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload, decode_point, prefill_point
from moejax.catalogue import model_entry
from moejax.physics import arch
from moejax.physics.cost import kv_bytes_per_sequence_gpu

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    "gpt-oss-120b",
    "gpt-oss-20b",
    "deepseek-v3.2",
    "qwen3-next-80b-a3b",
    "llama-4-scout",
    "llama-4-maverick",
    "glm-4.5",
    "minimax-m2",
    "minimax-m2.5",
    "kimi-k2.5",
    "qwen3.5-397b-a17b",
    "glm-5",
]
FIELDS = (
    "t_compute",
    "t_hbm",
    "t_comm",
    "t_comm_exposed",
    "step_time",
    "b_max",
    "throughput_per_gpu",
    "weight_bytes_per_gpu",
    "kv_bytes_per_gpu",
    "memory_per_gpu",
)
RTOL = 1e-12  # float64; sums taken in a different order


def _specs(pt):
    m, hw, p, wl, acc = pt
    return ModelSpec(**m), HardwareSpec(**hw), Partition(**p), Workload(**wl), Accounting(**acc)


def _same(a, b):
    assert bool(a.feasible) == bool(b.feasible)
    for f in FIELDS:
        np.testing.assert_allclose(float(getattr(a, f)), float(getattr(b, f)), rtol=RTOL, err_msg=f)


def _as_kind(m: dict, kind: str, context: float) -> dict:
    """``m`` with every decoder layer of ``kind``, sized so that it sees the whole context."""
    n = m["n_layers"]
    big = 4 * context
    return {
        **m,
        **{
            "sliding": {"n_sliding_layers": n, "sliding_window": big},
            "chunked": {"n_chunked_layers": n, "chunk_size": big},
            "sparse": {"n_sparse_layers": n, "sparse_top_k": big, "index_heads": 0.0, "index_head_dim": 0.0},
        }[kind],
    }


@pytest.mark.parametrize("prefill", [False, True])
def test_all_full_pattern_is_todays_model(prefill):
    """A pattern with no sliding, chunked, sparse or linear layers (whatever their sizes say) is the
    model without a pattern; and a sliding window, a chunk or a top-k that covers the whole context
    makes those layers full-attention layers: equal results on random points (rtol 1e-12)."""
    rng = np.random.default_rng(7 + prefill)
    kernel = jax.jit(prefill_point if prefill else decode_point)
    for _ in range(12):
        m, hw, p, wl, acc = random_prefill_point(rng) if prefill else random_point(rng)
        base = kernel(*_specs((m, hw, p, wl, acc)))
        sizes = {
            "sliding_window": 128.0,
            "chunk_size": 8192.0,
            "sparse_top_k": 2048.0,
            "index_heads": 64.0,
            "index_head_dim": 128.0,
            "linear_key_heads": 16.0,
            "linear_key_dim": 128.0,
            "linear_value_heads": 32.0,
            "linear_value_dim": 128.0,
            "linear_conv_kernel": 4.0,
        }
        _same(kernel(*_specs(({**m, **sizes}, hw, p, wl, acc))), base)
        for kind in ("sliding", "chunked", "sparse"):
            _same(kernel(*_specs((_as_kind(m, kind, wl["context"]), hw, p, wl, acc))), base)


def _model(**pattern):
    return ModelSpec(
        n_layers=32.0,
        d_model=4096.0,
        vocab_size=32000.0,
        n_heads=32.0,
        n_kv_heads=8.0,
        head_dim=128.0,
        d_ff=14336.0,
        n_dense_layers=32.0,
        **pattern,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.floats(1.0, 2.0**21),
    st.sampled_from([1.0, 64.0, 128.0, 4096.0, 8192.0]),
    st.sampled_from([1.0, 2.0, 4.0, 8.0]),
    st.sampled_from([1.0, 2.0, 4.0]),
    st.integers(1, 32),
)
def test_sliding_window_kv_never_exceeds_the_window(context, window, tp, kvp, n_sliding):
    """An all-sliding model holds at most W tokens per layer: its KV per sequence on a GPU is at most
    W/kvp tokens × values × bytes per layer, exactly min(L, W) of them, whatever the context."""
    m = _model(n_sliding_layers=32.0, sliding_window=window)
    p = Partition(tp=tp, kvp=kvp, kv_mode=0.0 if kvp == 1 else 1.0)
    acc = Accounting()
    per_token = 2 * max(8 / tp, 1.0) * 128 * 2.0 * 32  # values per token per GPU × 2 B × 32 layers
    kv = float(kv_bytes_per_sequence_gpu(m, p, context, acc))
    assert kv <= window / kvp * per_token * (1 + 1e-12)
    assert math.isclose(kv, min(context, window) / kvp * per_token, rel_tol=1e-12)
    # a model with only some sliding layers grows with the context only through its full layers
    mixed = _model(n_sliding_layers=float(n_sliding), sliding_window=window)
    grow = float(kv_bytes_per_sequence_gpu(mixed, p, 2 * context, acc)) - float(kv_bytes_per_sequence_gpu(mixed, p, context, acc))
    full_layers = 32 - n_sliding
    assert grow <= context / kvp * per_token / 32 * full_layers * (1 + 1e-9) + window / kvp * per_token


@settings(max_examples=60, deadline=None)
@given(st.floats(1.0, 2.0**24), st.floats(1.0, 2.0**24), st.sampled_from([1.0, 2.0, 4.0, 8.0, 64.0]), st.sampled_from([1.0, 4.0]))
def test_linear_attention_memory_is_constant_in_context(l1, l2, tp, kvp):
    """A linear-attention layer holds a fixed state per sequence: an all-linear model's memory per
    sequence (and its B_max) is the same at any two contexts."""
    m = _model(
        n_linear_layers=32.0,
        linear_key_heads=16.0,
        linear_key_dim=128.0,
        linear_value_heads=32.0,
        linear_value_dim=128.0,
        linear_conv_kernel=4.0,
    )
    p = Partition(tp=tp, kvp=kvp, kv_mode=0.0 if kvp == 1 else 1.0)
    acc = Accounting()
    a, b = (float(kv_bytes_per_sequence_gpu(m, p, x, acc)) for x in (l1, l2))
    assert a == b and a > 0
    hw = moejax.load_hardware("h200")
    r1, r2 = (decode_point(m, hw, p, Workload(context=x), acc) for x in (l1, l2))
    assert float(r1.b_max) == float(r2.b_max)


def test_kv_bytes_per_token_by_hand():
    """KV bytes per token of context (BF16), by hand from the configs:

    - gpt-oss-120b: 18 full layers × 2 (K, V) × 8 KV heads × 64 = 1,024 values × 2 B = 36,864 B/token; the 18
      sliding layers hold at most 128 tokens: 18 × 128 × 2,048 B = 4,718,592 B per sequence.
    - Qwen3-Next-80B-A3B: 12 full layers × 2 × 2 × 256 = 1,024 values × 2 B = 24,576 B/token; the 36 Gated DeltaNet
      layers hold (32 × 128 × 128 + (2·16·128 + 32·128) × 3) × 2 B = 1,097,728 B each, 39,518,208 B per sequence.
    - DeepSeek-V3.2 (FP8 cache, as deployed): 61 layers × (512 + 64 latent + 128 indexer key) = 704 values × 1 B
      = 42,944 B/token (BF16: 85,888).
    """
    oss, qn, v32 = (moejax.load_model(n) for n in ("gpt-oss-120b", "qwen3-next-80b-a3b", "deepseek-v3.2"))
    assert float(arch.kv_bytes_per_token(oss)) == 36_864
    assert float(arch.kv_bytes_per_sequence(oss, 8192.0)) == 8192 * 36_864 + 4_718_592
    assert float(arch.kv_bytes_per_token(qn)) == 24_576
    assert float(arch.kv_bytes_per_sequence(qn, 1.0)) == 24_576 + 39_518_208
    assert float(arch.kv_bytes_per_token(v32)) == 42_944
    assert float(moejax.kv_bytes_per_token("deepseek-v3.2")) == 42_944
    assert float(arch.kv_bytes_per_token(moejax.load_model("deepseek-v3.2", kv="bf16"))) == 85_888


def test_kv_bytes_per_token_by_hand_serving_corpus():
    """The same for two of AIConfigurator's serving-corpus models (BF16 KV):

    - Qwen3.5-397B-A17B: 15 full layers × 2 (K, V) × 2 KV heads × 256 = 15,360 values × 2 B = 30,720 B/token; each of the
      45 Gated DeltaNet layers holds (64 × 128 × 128 + (2·16·128 + 64·128) × 3) × 2 B = (1,048,576 + 36,864) × 2 B
      = 2,170,880 B, 97,689,600 B per sequence.
    - GLM-5: 78 DSA layers × (512 latent + 64 RoPE key + 128 indexer key) = 704 values × 2 B = 109,824 B/token.
    """
    q35, glm5 = moejax.load_model("qwen3.5-397b-a17b"), moejax.load_model("glm-5")
    assert float(arch.kv_bytes_per_token(q35)) == 15 * 2 * 2 * 256 * 2 == 30_720
    assert float(arch.kv_bytes_per_sequence(q35, 1.0)) == 30_720 + 45 * 2_170_880 == 30_720 + 97_689_600
    assert float(arch.kv_bytes_per_token(glm5)) == 78 * 704 * 2 == 109_824
    assert (float(q35.n_linear_layers), float(glm5.n_sparse_layers), float(glm5.sparse_top_k)) == (45, 78, 2048)


def _round_sig(x, sig):
    return round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_match_published(name):
    """Totals within 1 % of the published figure, or to its significant figures (``total_sig_figs``), adding
    the MTP module or the vision tower where the published figure counts them; actives within 1 % or to the
    published significant figures, in the publisher's convention (with the input embedding, or without the output head,
    as the entry says)."""
    entry = model_entry(name)
    pub = entry["published"]
    assert pub["source"] and entry["source"]
    m = moejax.load_model(name)
    total, active = (float(x) for x in arch.param_counts(m))
    if pub.get("total_includes_mtp"):
        total += float(arch.mtp_params(m))
    total += pub.get("non_text_params", 0.0)
    if "total_sig_figs" in pub:
        assert _round_sig(total, pub["total_sig_figs"]) == pub["total_params"], total
    else:
        assert abs(total / pub["total_params"] - 1) <= 0.01, (total, pub["total_params"])
    lookup = float(m.vocab_size * m.d_model)
    active += lookup if pub.get("active_includes_input_embedding") else 0.0
    active -= lookup if pub.get("active_excludes_lm_head") else 0.0
    if "active_sig_figs" in pub:
        assert _round_sig(active, pub["active_sig_figs"]) == pub["active_params"], active
    else:
        assert abs(active / pub["active_params"] - 1) <= 0.01, (active, pub["active_params"])


@pytest.mark.parametrize("name", MODELS)
def test_hf_config_loads_as_the_catalogue_entry(name):
    """The trimmed config.json under tests/data/hf/ imports to the same ModelSpec as the YAML entry
    (dtypes apart: a config.json carries no serving dtypes)."""
    path = ROOT / "tests" / "data" / "hf" / f"{name}.json"
    assert json.loads(path.read_text())["_source"].startswith("https://huggingface.co/")
    got, want = moejax.load_model(str(path)), moejax.load_model(name)
    dtypes = {
        "weight_bytes",
        "kv_bytes",
        "act_bytes",
        "expert_bytes",
        "embed_bytes",
        "gemm_bytes",
        "attn_bytes",
        "dispatch_bytes",
    }
    for f in dataclasses.fields(ModelSpec):
        if f.name not in dtypes:
            assert float(getattr(got, f.name)) == float(getattr(want, f.name)), f.name


def test_patterns_read_from_the_configs():
    counts = {n: moejax.load_model(n) for n in ("gpt-oss-120b", "qwen3-next-80b-a3b", "llama-4-maverick", "deepseek-v3.2")}
    oss, qn, mav, v32 = counts.values()
    assert (float(oss.n_sliding_layers), float(oss.sliding_window), float(arch.n_full_layers(oss))) == (18, 128, 18)
    assert (float(qn.n_linear_layers), float(arch.n_full_layers(qn))) == (36, 12)
    assert (float(mav.n_chunked_layers), float(mav.chunk_size), float(mav.n_dense_layers)) == (36, 8192, 24)
    assert (float(v32.n_sparse_layers), float(v32.sparse_top_k), float(v32.index_heads)) == (61, 2048, 64)


def _write(tmp_path, **changes):
    entry = model_entry("gpt-oss-20b")
    entry.pop("_where")
    entry["architecture"].update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(entry))
    return str(path)


@pytest.mark.parametrize(
    "changes,field,value",
    [
        ({"sliding_window": 0}, "architecture.sliding_window", "0"),
        ({"sliding_window": -128}, "architecture.sliding_window", "-128"),
        ({"layer_types": ["sliding_attention", "full_attention"] * 11}, "architecture.layer_types", "got 22"),
        ({"layer_types": ["sliding_attention", "global_attention"] * 12}, "architecture.layer_types[1]", "'global_attention'"),
        ({"chunk_size": 0}, "architecture.chunk_size", "0"),
    ],
)
def test_bad_pattern_names_the_field(tmp_path, changes, field, value):
    with pytest.raises(SpecError) as err:
        moejax.load_model(_write(tmp_path, **changes))
    msg = str(err.value)
    assert "\n" not in msg and f"{field} = " in msg and value in msg and "is invalid" in msg


def test_bad_pattern_in_a_spec_or_config_json():
    with pytest.raises(SpecError, match=r"ModelSpec.sliding_window = 0.0 is invalid: must be > 0 when n_sliding_layers > 0"):
        _model(n_sliding_layers=4.0)
    with pytest.raises(SpecError, match=r"ModelSpec.n_layers = 32.0 is invalid: the pattern's"):
        _model(n_sliding_layers=20.0, sliding_window=128.0, n_chunked_layers=20.0, chunk_size=8192.0)
    cfg = json.loads((ROOT / "tests" / "data" / "hf" / "gpt-oss-20b.json").read_text())
    cfg["layer_types"] = cfg["layer_types"][:-1]
    with pytest.raises(SpecError, match=r"config.json: layer_types = .* must be a list of num_hidden_layers = 24"):
        moejax.catalogue.hf.architecture_from_hf_config(cfg)


def test_bad_pattern_cli_exit_code(tmp_path):
    """The sweep command turns a bad pattern into one stderr line and exit code 2."""
    import subprocess
    import sys

    path = _write(tmp_path, sliding_window=0)
    proc = subprocess.run(
        [sys.executable, "-m", "moejax.sweep", "+grid=quick", f"grid.models=[{path}]", f"out={tmp_path}/x.nc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sliding_window" in lines[0]
    assert not (tmp_path / "x.nc").exists()


def test_layer_patterns_switch_is_exact_without_a_pattern():
    """``Accounting.layer_patterns = False`` (the engine's fast path when no row has a pattern) gives
    the same results for models without a pattern, and the engine turns it on when one has."""
    from moejax.bench import _plan

    rng = np.random.default_rng(11)
    for _ in range(6):
        m, hw, p, wl, acc = _specs(random_point(rng))
        a = decode_point(m, hw, p, wl, acc)
        b = decode_point(m, hw, p, wl, dataclasses.replace(acc, layer_patterns=False))
        _same(a, b)  # (the fast path is the pre-pattern code: equal to 1e-12, sums taken in another order)
    assert _plan(["grid.models=[deepseek-v3]"]).accounting.layer_patterns is False
    assert _plan(["grid.models=[deepseek-v3,gpt-oss-20b]"]).accounting.layer_patterns is True


def test_pattern_formulas_worked_examples():
    """The docstring examples of moejax/physics/arch.py, by hand from the configs."""
    v32, qn = moejax.load_model("deepseek-v3.2"), moejax.load_model("qwen3-next-80b-a3b")
    assert float(arch.indexer_params(v32)) == 1536 * 64 * 128 + 7168 * 128 + 7168 * 64 == 13_959_168
    assert float(arch.linear_attn_params(qn)) == 2048 * (2 * 16 * 128 + 2 * 32 * 128) + 2048 * 64 + 8192 * 4 + 4096 * 2048
    assert float(arch.linear_attn_params(qn)) == 33_718_272
    assert float(arch.linear_state_values(qn)) == 32 * 128 * 128 + 8192 * 3 == 548_864
    assert float(arch.linear_state_flops(qn)) == 6 * 524_288
    (sl, _), (ch_s, ch_r), (sp_s, sp_r) = arch.window_tokens(moejax.load_model("llama-4-scout"), 131072.0)
    assert (float(ch_s), float(ch_r), float(sp_s)) == (8192, 4096, 131072)
