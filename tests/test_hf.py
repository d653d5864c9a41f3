"""Hugging Face config.json import: real configs map to the catalogue's architecture numbers,
and malformed configs fail with a one-line SpecError naming the field."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from moejax.catalogue.hf import SUPPORTED, architecture_from_hf_config
from moejax.physics.specs import SpecError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "hf"
CATALOGUE = ROOT / "conf" / "model"
NAMES = ["llama-3-70b", "mixtral-8x22b", "qwen3-235b-a22b", "deepseek-v3", "llama-3.1-8b", "qwen3-32b"]
ALIASES = ["llama-3.1-70b", "deepseek-r1", "minimax-m2.5", "kimi-k2.5"]  # catalogue entries with alias_of


def _fixture(name: str) -> dict:
    with open(FIXTURES / f"{name}.json") as f:
        return json.load(f)


def _catalogue_arch(name: str) -> dict:
    with open(CATALOGUE / f"{name}.yaml") as f:
        return yaml.safe_load(f)["architecture"]


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_catalogue_architecture(name):
    cfg = _fixture(name)
    assert cfg["_source"].startswith("https://huggingface.co/")
    got = architecture_from_hf_config(cfg)
    want = _catalogue_arch(name)
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for key, value in want.items():
        assert got[key] == value, f"{name}: {key} imported {got[key]!r}, catalogue has {value!r}"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_model_type_is_supported(name):
    cfg = _fixture(name)
    assert cfg["model_type"] in SUPPORTED
    assert cfg["architectures"] == [SUPPORTED[cfg["model_type"]]]


def _broken(name: str, **changes) -> dict:
    cfg = copy.deepcopy(_fixture(name))
    for key, value in changes.items():
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    return cfg


def _assert_one_line_naming(excinfo, field: str):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith("config.json: ")
    assert field in msg


@pytest.mark.parametrize("name", NAMES)
def test_missing_hidden_size(name):
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken(name, hidden_size=None))
    _assert_one_line_naming(excinfo, "hidden_size")


@pytest.mark.parametrize("name", NAMES)
def test_negative_num_hidden_layers(name):
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken(name, num_hidden_layers=-2))
    _assert_one_line_naming(excinfo, "num_hidden_layers")
    assert "-2" in str(excinfo.value)


@pytest.mark.parametrize(
    "name, experts_field",
    [
        ("mixtral-8x22b", "num_local_experts"),
        ("qwen3-235b-a22b", "num_experts"),
        ("deepseek-v3", "n_routed_experts"),
    ],
)
def test_top_k_above_expert_count(name, experts_field):
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken(name, **{experts_field: 8, "num_experts_per_tok": 9}))
    _assert_one_line_naming(excinfo, "num_experts_per_tok")
    assert str(excinfo.value) == (f"config.json: num_experts_per_tok = 9 is invalid: must not exceed {experts_field} = 8")


def test_unknown_model_type_names_supported_ones():
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config({"model_type": "gpt_neox", "hidden_size": 64})
    _assert_one_line_naming(excinfo, "model_type")
    for model_type in SUPPORTED:
        assert model_type in str(excinfo.value)


def test_dispatch_on_architectures_when_model_type_absent():
    cfg = _broken("llama-3-70b", model_type=None)
    assert architecture_from_hf_config(cfg) == _catalogue_arch("llama-3-70b")


def test_inconsistent_architectures_and_model_type():
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken("llama-3-70b", architectures=["MixtralForCausalLM"]))
    _assert_one_line_naming(excinfo, "architectures")


def test_bool_is_not_an_integer():
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken("llama-3-70b", num_key_value_heads=True))
    _assert_one_line_naming(excinfo, "num_key_value_heads")


def test_kv_heads_must_divide_heads():
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken("mixtral-8x22b", num_key_value_heads=7))
    _assert_one_line_naming(excinfo, "num_key_value_heads")


def test_qwen3_interleaved_dense_layers_are_counted():
    arch = architecture_from_hf_config(_broken("qwen3-235b-a22b", decoder_sparse_step=2, mlp_only_layers=[1]))
    # MoE iff (i+1) % 2 == 0 and i != 1: layers 3, 5, ..., 93 -> 46 MoE, 48 dense
    assert (arch["n_dense_layers"], arch["d_ff"]) == (48, 12288)


def test_deepseek_without_q_compression():
    arch = architecture_from_hf_config(_broken("deepseek-v3", q_lora_rank=0))
    assert arch["q_lora_rank"] == 0
    arch = architecture_from_hf_config(_broken("deepseek-v3", first_k_dense_replace=0))
    assert (arch["n_dense_layers"], arch["d_ff"]) == (0, 0)


def test_imported_architecture_builds_a_model_spec():
    catalogue = pytest.importorskip("moejax.catalogue")
    for name in NAMES:
        spec = catalogue.model_from_architecture(architecture_from_hf_config(_fixture(name)), where=name)
        assert float(spec.n_layers) == _catalogue_arch(name)["n_layers"]


@pytest.mark.parametrize("name", ALIASES)
def test_alias_fixture_imports_to_the_aliased_architecture(name):
    """Each alias's own config.json imports to the architecture of the entry it aliases (what justifies the alias)."""
    from moejax.catalogue import model_entry

    cfg = _fixture(name)
    assert cfg["_source"].startswith("https://huggingface.co/")
    got, entry = architecture_from_hf_config(cfg), model_entry(name)
    want = _catalogue_arch(entry["alias_of"])
    for key, value in want.items():
        assert got.get(key, 0 if key == "mtp_layers" else None) == value, (
            f"{name}: {key} imported {got.get(key)!r}, catalogue has {value!r}"
        )


@pytest.mark.parametrize("types", [1e300, "1", {"a": 1}, [1, 0], [[1]]])
def test_minimax_attention_types_must_be_a_list_of_ones(types):
    """Found by the 1,000-example fuzz run (2026-12-07): ``attn_type_list: 1e300`` was a TypeError."""
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken("minimax-m2", attn_type_list=types))
    _assert_one_line_naming(excinfo, "attn_type_list")


@pytest.mark.parametrize("name", ["kimi-k2.5", "qwen3.5-397b-a17b"])
def test_text_config_is_required(name):
    with pytest.raises(SpecError) as excinfo:
        architecture_from_hf_config(_broken(name, text_config=None))
    _assert_one_line_naming(excinfo, "text_config")
    with pytest.raises(SpecError) as excinfo:  # a text_config field is named as such
        architecture_from_hf_config(_broken(name, text_config={**_fixture(name)["text_config"], "hidden_size": None}))
    _assert_one_line_naming(excinfo, "hidden_size")


def test_qwen3_5_output_gate_follows_the_config():
    cfg = _fixture("qwen3.5-397b-a17b")
    assert architecture_from_hf_config(cfg)["attn_gate"] is True
    cfg["text_config"] = {**cfg["text_config"], "attn_output_gate": False}
    arch = architecture_from_hf_config(cfg)
    assert arch["attn_gate"] is False and arch["layer_types"].count("full_attention") == 15
