"""Catalogue entries load, carry sources, and match published parameter counts; bad input fails clearly."""

import math

import pytest
import yaml

import moejax
from moejax import Partition, SpecError
from moejax.catalogue import HARDWARE_FIELDS, HARDWARE_OPTIONAL, available, hardware_entry, model_entry

MODELS = [
    "deepseek-v3",
    "qwen3-235b-a22b",
    "grok-1",
    "switch-c-2048",
    "mixtral-8x22b",
    "llama-3-70b",
    "llama-3-405b",
    "gpt-4-rumoured",
    "mixtral-8x7b",
    "llama-2-70b",
    "kimi-k2",
    "llama-3.1-8b",
    "qwen3-32b",
    "llama-3.1-70b",
    "deepseek-r1",
]
ALIASES = {"llama-3.1-70b": "llama-3-70b", "deepseek-r1": "deepseek-v3", "minimax-m2.5": "minimax-m2", "kimi-k2.5": "kimi-k2"}
HARDWARE = ["h100-sxm", "h200", "b200", "mi300x", "mi355x", "qs-reference", "a100-sxm", "h800", "gb200-nvl72"]


def test_catalogue_is_complete():
    assert set(MODELS) <= set(available("model"))
    assert set(HARDWARE) <= set(available("hardware"))


def _round_sig(x, sig):
    return round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_match_published(name):
    """Totals within 1 %; actives within 1 %, or, where the figure is published to fewer significant
    figures (``active_sig_figs``), rounding to it."""
    entry = model_entry(name)
    total, active = moejax.param_counts(name)
    pub = entry["published"]
    assert pub["source"]
    assert abs(total / pub["total_params"] - 1) <= 0.01, (total, pub["total_params"])
    if pub.get("active_params") is not None:
        if "active_sig_figs" in pub:
            assert _round_sig(active, pub["active_sig_figs"]) == pub["active_params"]
        else:
            assert abs(active / pub["active_params"] - 1) <= 0.01, (active, pub["active_params"])


@pytest.mark.parametrize("name,target", ALIASES.items())
def test_alias_shares_its_targets_architecture(name, target):
    """An ``alias_of`` entry is its target's architecture with its own description, source and published counts."""
    entry, base = model_entry(name), model_entry(target)
    assert entry["alias_of"] == target and entry["architecture"] == base["architecture"]
    assert entry["source"] != base["source"] and entry["published"]["source"]
    assert entry["_where"].endswith(f"{name}.yaml")
    assert moejax.load_model(name) == moejax.load_model(target, **entry["dtypes"])


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"alias_of": "llama-3-70b"}, "architecture is not allowed with alias_of = 'llama-3-70b'"),
        (
            {"alias_of": "deepseek-r1", "architecture": None},
            "alias_of = 'deepseek-r1' is invalid: .*deepseek-r1.yaml is itself an alias",
        ),
        ({"alias_of": "llama-9", "architecture": None}, "model = 'llama-9' is unknown: available .*llama-3-70b"),
        (
            {"alias_of": ["llama-3-70b"], "architecture": None},
            r"alias_of = \['llama-3-70b'\] is invalid: must be a catalogue model name",
        ),
    ],
)
def test_bad_alias_fails_in_one_line(tmp_path, changes, message):
    entry = model_entry("llama-3.1-8b")
    entry.pop("_where")
    entry.update(changes)
    entry = {k: v for k, v in entry.items() if v is not None}
    path = tmp_path / "alias.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(SpecError, match=message) as err:
        moejax.load_model(str(path))
    assert "\n" not in str(err.value)


def test_kv_bytes_per_token_of_the_new_dense_models():
    """BF16 KV bytes per token, by hand from the configs: Llama-3.1-8B 32 layers × 2 (K, V) × 8 KV heads × 128 =
    65,536 values × 2 B = 131,072 B; Qwen3-32B 64 × 2 × 8 × 128 = 131,072 values × 2 B = 262,144 B; Llama-3.1-70B as
    Llama-3-70B, 80 × 2 × 8 × 128 × 2 B = 327,680 B; DeepSeek-R1 as DeepSeek-V3, 61 × (512 + 64) × 2 B = 70,272 B."""
    assert float(moejax.kv_bytes_per_token("llama-3.1-8b")) == 32 * 2 * 8 * 128 * 2 == 131_072
    assert float(moejax.kv_bytes_per_token("qwen3-32b")) == 64 * 2 * 8 * 128 * 2 == 262_144
    assert float(moejax.kv_bytes_per_token("llama-3.1-70b")) == 327_680
    assert float(moejax.kv_bytes_per_token("deepseek-r1")) == 70_272


def test_rumoured_model_is_marked():
    entry = model_entry("gpt-4-rumoured")
    assert entry["rumoured"] is True and entry["rumour_source"]
    arch = entry["architecture"]
    assert (arch["n_layers"], arch["n_experts"], arch["top_k"]) == (120, 16, 2)


@pytest.mark.parametrize("name", HARDWARE)
def test_hardware_numbers_carry_sources(name):
    entry = hardware_entry(name)
    for field in HARDWARE_FIELDS:
        if field in HARDWARE_OPTIONAL and field not in entry:
            continue
        assert entry[field]["source"], field
    for field in ("flops_bf16", "flops_fp8"):
        assert entry[field]["sparsity"] == "dense"
    moejax.load_hardware(name)


def _write_model(tmp_path, **changes):
    entry = model_entry("mixtral-8x22b")
    entry.pop("_where")
    entry["architecture"].update(changes)
    for k in [k for k, v in entry["architecture"].items() if v is None]:
        del entry["architecture"][k]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(entry))
    return str(path)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"d_model": None}, "d_model"),
        ({"n_layers": -4}, "n_layers"),
        ({"top_k": 9}, "top_k"),
        ({"attention": "sliding"}, "attention"),
        ({"n_kv_heads": 5}, "n_kv_heads"),
        ({"d_model": "big"}, "d_model"),
    ],
)
def test_bad_model_yaml_names_the_field(tmp_path, changes, field):
    with pytest.raises(SpecError) as err:
        moejax.load_model(_write_model(tmp_path, **changes))
    msg = str(err.value)
    assert field in msg and "\n" not in msg


def test_unknown_names_list_what_is_available():
    with pytest.raises(SpecError, match="available .*deepseek-v3"):
        moejax.load_model("deepseek-v9")
    with pytest.raises(SpecError, match="available .*h100-sxm"):
        moejax.load_hardware("h1000")


def test_bad_hardware_value(tmp_path):
    entry = hardware_entry("h100-sxm")
    entry.pop("_where")
    entry["hbm_bw"]["value"] = -1.0
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(SpecError, match="hbm_bw = -1.0"):
        moejax.load_hardware(str(path))


@pytest.mark.parametrize(
    "part,field",
    [
        (Partition(tp=3.0), "Partition.tp"),  # 48 heads / 3 ok, but 8 KV heads: neither divides
        (Partition(tp=16.0, ep=16.0), "Partition.ep"),
        (Partition(pp=57.0), "Partition.pp"),  # 56 layers: uneven stages are fine, empty ones are not
    ],
)
def test_partition_that_divides_nothing(part, field):
    with pytest.raises(SpecError, match=field):
        moejax.decode_step("mixtral-8x22b", "h100-sxm", part, context=1024)


def test_bad_partition_values():
    with pytest.raises(SpecError, match="Partition.kvp"):
        Partition(kvp=4.0)  # needs a KV-parallel mode
    with pytest.raises(SpecError, match="Partition.tp = 0"):
        Partition(tp=0.0)
