"""Model and hardware catalogues: YAML data under ``conf/`` (and Hugging Face ``config.json``).

Conversion to SI and numeric codes happens here, at the edge; errors are one line naming the
file, the field, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import yaml

from ..physics import baseline
from ..physics.specs import ATTENTION_KINDS, FABRICS, STACKS, Accounting, HardwareSpec, ModelSpec, SpecError
from . import hf_patterns  # noqa: F401  (registers the patterned families' config.json importers)
from .files import load_json, load_yaml
from .hf import architecture_from_hf_config
from .patterns import PATTERN_FIELDS, pattern_counts

# The catalogues and Hydra configs: ``moejax/conf`` in an installed wheel (setup.py maps the top-level
# ``conf/`` there at build time), ``conf/`` beside the package in a clone or an editable install.
# ROOT is the directory holding the ``moejax`` package: the repository root in a clone, so paths such
# as ``moejax/data/reference/...`` resolve against it in both layouts.
ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = next((d for d in (ROOT / "moejax" / "conf", ROOT / "conf") if d.is_dir()), ROOT / "conf")

# bytes per stored value, block scales included: NVFP4 is 4 bits + an FP8 scale per 16 values (4.5 bits),
# MXFP4 4 bits + an 8-bit scale per 32 (4.25 bits), INT4 4 bits + an FP16 scale per 128 (4.125 bits)
DTYPE_BYTES = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "nvfp4": 0.5625,
    "mxfp4": 0.53125,
    "fp4": 0.5625,
    "int4": 0.515625,
}
# dtypes: key -> (ModelSpec field, default name; None: the field's own default, 0 = follow another dtype)
DTYPE_FIELDS = {
    "weights": ("weight_bytes", "bf16"),
    "kv": ("kv_bytes", "bf16"),
    "activations": ("act_bytes", "bf16"),
    "experts": ("expert_bytes", None),
    "embeddings": ("embed_bytes", "bf16"),
    "gemm": ("gemm_bytes", None),
    "attention": ("attn_bytes", "bf16"),
    "dispatch": ("dispatch_bytes", None),
}
FFN_MATRICES = {"swiglu": 3.0, "geglu": 3.0, "gelu": 2.0, "relu": 2.0}
ARCH_REQUIRED = ("n_layers", "d_model", "vocab_size", "attention", "n_heads", "n_kv_heads", "head_dim", "ffn_activation")
ARCH_OPTIONAL = {
    "n_encoder_layers": 0,
    "n_dense_layers": None,
    "cross_attention": False,
    "tied_embeddings": False,
    "v_head_dim": 0,
    "rope_head_dim": 0,
    "q_lora_rank": 0,
    "kv_lora_rank": 0,
    "d_ff": 0,
    "n_experts": 1,
    "top_k": 1,
    "d_ff_expert": 0,
    "shared_d_ff": 0,
    "mtp_layers": 0,
    **dict.fromkeys(PATTERN_FIELDS, 0),
    "layer_types": None,
    "attn_gate": False,
}
HARDWARE_FIELDS = tuple(f.name for f in dataclasses.fields(HardwareSpec))  # declared once, in physics/specs.py
HARDWARE_OPTIONAL = {"torus_dims": 0, "stack": "cuda"}  # only a torus needs its dimensions; the stack defaults to CUDA
HARDWARE_CODES = {"fabric": FABRICS, "stack": STACKS}  # categorical fields, named in the YAML, coded in the spec


_USER_DIRS: list[Path] = []  # --config-dir directories, searched before CONF_DIR


def add_config_dir(path) -> None:
    """Search ``path/<kind>/<name>.yaml`` before the packaged catalogue (Hydra's ``--config-dir``)."""
    path = Path(path).resolve()
    if path != CONF_DIR and path not in _USER_DIRS:
        _USER_DIRS.insert(0, path)


def config_dirs() -> list[Path]:
    return [*_USER_DIRS, CONF_DIR]


def available(kind: str) -> list[str]:
    """Catalogue entry names of ``kind`` ("model", "hardware" or "accounting"), user directories included."""
    return sorted({p.stem for d in config_dirs() for p in (d / kind).glob("*.yaml")})


def _read_yaml(kind: str, name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and path.parent == Path("."):  # a name ("deepseek-v3.2" is one too)
        found = [d / kind / f"{name_or_path}.yaml" for d in config_dirs() if (d / kind / f"{name_or_path}.yaml").exists()]
        if not found:
            raise SpecError(f"{kind} = {name_or_path!r} is unknown: available {', '.join(available(kind))}")
        path = found[0]
    elif not path.is_file():
        raise SpecError(f"{kind} file {str(path)!r} does not exist")
    try:
        data = load_yaml(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: is not valid YAML{at}: {getattr(e, 'problem', None) or type(e).__name__}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: top level = {type(data).__name__} is invalid: must be a mapping")
    return data, str(path)


def _name(where: str, field: str, value, allowed) -> str:
    """A categorical field: one of ``allowed`` (a string; a list or number is refused with one line)."""
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{where}: {field} = {value!r} is invalid: allowed {', '.join(allowed)}")
    return value


def _number(where: str, field: str, value, allowed: str = "a number") -> float:
    if isinstance(value, jax.core.Tracer):  # an override under jax.grad / jit: checked by the kernel's masks
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: {field} = {value!r} is invalid: must be {allowed}")
    return float(value)


def _dtype(where: str, field: str, name) -> float:
    return DTYPE_BYTES[_name(where, field, name, DTYPE_BYTES)]


def model_from_architecture(arch: dict, dtypes: dict | None = None, where: str = "model") -> ModelSpec:
    """Build a ``ModelSpec`` from an ``architecture:`` mapping (YAML keys) and a ``dtypes:`` one."""
    unknown = set(arch) - set(ARCH_REQUIRED) - set(ARCH_OPTIONAL)
    if unknown:
        field = sorted(unknown)[0]
        raise SpecError(
            f"{where}: architecture.{field} is not a known field: allowed {', '.join(ARCH_REQUIRED + tuple(ARCH_OPTIONAL))}"
        )
    for field in ARCH_REQUIRED:
        if field not in arch:
            raise SpecError(f"{where}: architecture.{field} is missing: it is required")
    a = {**ARCH_OPTIONAL, **arch}
    _name(where, "architecture.attention", a["attention"], ATTENTION_KINDS)
    _name(where, "architecture.ffn_activation", a["ffn_activation"], FFN_MATRICES)
    for flag in ("cross_attention", "tied_embeddings", "attn_gate"):
        if not isinstance(a[flag], bool):
            raise SpecError(f"{where}: architecture.{flag} = {a[flag]!r} is invalid: must be true or false")
    if dtypes is not None and not isinstance(dtypes, dict):
        raise SpecError(f"{where}: dtypes = {dtypes!r} is invalid: must be a mapping such as {{weights: fp8}}")
    numeric = {
        k: v
        for k, v in a.items()
        if k
        not in ("attention", "ffn_activation", "cross_attention", "tied_embeddings", "n_dense_layers", "layer_types", "attn_gate")
    }
    vals = {k: _number(where, f"architecture.{k}", v) for k, v in numeric.items()}
    vals.update(pattern_counts(arch, vals, where))
    n_dense = a["n_dense_layers"]
    vals["n_dense_layers"] = vals["n_layers"] if n_dense is None else _number(where, "architecture.n_dense_layers", n_dense)
    dt = {k: name for k, (_, name) in DTYPE_FIELDS.items() if name is not None}
    dt.update({k: v for k, v in (dtypes or {}).items() if v is not None})
    unknown = set(dt) - set(DTYPE_FIELDS)
    if unknown:
        raise SpecError(f"{where}: dtypes.{sorted(unknown)[0]} is not a known dtype key: allowed {', '.join(DTYPE_FIELDS)}")
    sizes = {DTYPE_FIELDS[k][0]: _dtype(where, f"dtypes.{k}", name) for k, name in dt.items()}
    try:
        return ModelSpec(
            **vals,
            **sizes,
            attn_kind=float(ATTENTION_KINDS[a["attention"]]),
            cross_attention=float(bool(a["cross_attention"])),
            tied_embeddings=float(bool(a["tied_embeddings"])),
            attn_gate=float(bool(a["attn_gate"])),
            ffn_matrices=FFN_MATRICES[a["ffn_activation"]],
        )
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def model_entry(name_or_path: str) -> dict:
    """The raw catalogue entry (description, sources, published counts, architecture)."""
    if str(name_or_path).endswith(".json"):
        return {"description": f"imported from {name_or_path}", "architecture": _hf_architecture(str(name_or_path))}
    data, where = _read_yaml("model", name_or_path)
    if "alias_of" in data:
        data = _resolve_alias(data, where)
    if "architecture" not in data or not isinstance(data["architecture"], dict):
        raise SpecError(f"{where}: architecture is missing: it is required (a mapping)")
    if not isinstance(data.get("dtypes", {}), dict):
        raise SpecError(f"{where}: dtypes = {data['dtypes']!r} is invalid: must be a mapping such as {{weights: fp8}}")
    data["_where"] = where
    return data


def _resolve_alias(data: dict, where: str) -> dict:
    """An entry with ``alias_of: NAME`` (another catalogue entry with the same architecture, e.g. a
    later checkpoint of it) takes that entry's keys, its own top-level keys (description, source,
    published, dtypes) replacing them; it may not carry an ``architecture:`` or alias an alias."""
    target = data["alias_of"]
    if not isinstance(target, str) or not target or Path(target).suffix or Path(target).parent != Path("."):
        raise SpecError(f"{where}: alias_of = {target!r} is invalid: must be a catalogue model name")
    if "architecture" in data:
        raise SpecError(f"{where}: architecture is not allowed with alias_of = {target!r}: the alias shares its architecture")
    base, base_where = _read_yaml("model", target)
    if "alias_of" in base:
        raise SpecError(f"{where}: alias_of = {target!r} is invalid: {base_where} is itself an alias (name its target)")
    return {**base, **data}


def _hf_architecture(path: str) -> dict:
    """A Hugging Face ``config.json`` as an ``architecture:`` mapping; errors name ``path``."""
    try:
        cfg = load_json(Path(path))
    except json.JSONDecodeError as e:
        raise SpecError(
            f"{path}: is not valid JSON (an empty or truncated file?): {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return architecture_from_hf_config(cfg)
    except SpecError as e:
        msg = str(e)
        raise SpecError(
            f"{path}:{msg.removeprefix('config.json:')}" if msg.startswith("config.json:") else f"{path}: {msg}"
        ) from None


def load_model(name_or_path: str, **dtypes) -> ModelSpec:
    """A catalogue model by name (``conf/model/<name>.yaml``), a YAML path, or a Hugging Face
    ``config.json`` path. ``dtypes`` override the entry's, by ``DTYPE_FIELDS`` key: weights, kv,
    activations (on the wire), experts (routed; default: weights), embeddings (input table and LM
    head; default bf16, as checkpoints keep them), gemm (GEMM input precision: W8A16 is
    ``weights=fp8, gemm=bf16``; default: each weight's own), attention (attention matmuls; default
    bf16: FP8 KV is dequantised for the matmul), dispatch (EP dispatch payload; default:
    activations). A ``None`` value keeps the entry's."""
    entry = model_entry(name_or_path)
    where = entry.get("_where", str(name_or_path))
    for key, name in (entry.get("dtypes") or {}).items():  # the entry's own, even where an override replaces it
        if name is not None:
            _dtype(where, f"dtypes.{key}", name)
    return model_from_architecture(entry["architecture"], {**entry.get("dtypes", {}), **dtypes}, where)


def hardware_entry(name_or_path: str) -> dict:
    data, where = _read_yaml("hardware", name_or_path)
    data["_where"] = where
    return data


def load_hardware(name_or_path: str, **overrides) -> HardwareSpec:
    """A catalogue accelerator by name (``conf/hardware/<name>.yaml``) or YAML path, in SI units.
    Each field is ``{value: ..., source: ...}``; ``overrides`` replace values (SI units)."""
    entry = hardware_entry(name_or_path)
    where = entry["_where"]
    vals = {}
    for field in HARDWARE_FIELDS:
        item = entry.get(field, HARDWARE_OPTIONAL.get(field))
        if item is None:
            raise SpecError(f"{where}: {field} is missing: it is required ({{value: ..., source: ...}})")
        value = item.get("value") if isinstance(item, dict) else item
        if field in HARDWARE_CODES:
            value = HARDWARE_CODES[field][_name(where, field, value, HARDWARE_CODES[field])]
        vals[field] = _number(where, field, value)
    for field, value in overrides.items():
        if field not in HARDWARE_FIELDS:
            raise SpecError(f"hardware override {field} is not a known field: allowed {', '.join(HARDWARE_FIELDS)}")
        vals[field] = _number("hardware override", field, value)
    try:
        return HardwareSpec(**vals)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def dense_baseline(
    model: ModelSpec, kappa, family: str = "keep-attention", anchor: ModelSpec | None = None, integer: bool = False
) -> ModelSpec:
    """``physics.baseline.dense_baseline``, with the cube-root family's anchor loaded from the
    catalogue (``EPOCH_ANCHOR``) when none is given."""
    if family == "epoch-cube-root" and anchor is None:
        anchor = load_model(baseline.EPOCH_ANCHOR)
    return baseline.dense_baseline(model, kappa, family, anchor, integer)


ACCOUNTING_FIELDS = tuple(f.name for f in dataclasses.fields(Accounting) if not f.metadata.get("static"))
ACCOUNTING_METADATA = (
    "mode",
    "description",
    "provenance",
    "profiles",
    "intervals",
)  # keys of conf/accounting/*.yaml that are not constants


def accounting_from_mapping(data: dict, where: str = "accounting", **overrides) -> Accounting:
    """An ``Accounting`` from ``{field: {value: ..., source: ...}}`` (SI units): every non-static
    constant is required, an unknown key is an error; ``mode`` names the preset. ``overrides``
    replace constants or set the static switches (``expert_traffic``, ``roofline``, ``integer_batch``)."""
    unknown = set(data) - set(ACCOUNTING_FIELDS) - set(ACCOUNTING_METADATA)
    if unknown:
        raise SpecError(f"{where}: {sorted(unknown)[0]} is not an Accounting constant: allowed {', '.join(ACCOUNTING_FIELDS)}")
    vals = {}
    for field in ACCOUNTING_FIELDS:
        item = data.get(field)
        if item is None:
            raise SpecError(f"{where}: {field} is missing: it is required ({{value: ..., source: ...}})")
        vals[field] = _number(where, field, item.get("value") if isinstance(item, dict) else item)
    bad = set(overrides) - {f.name for f in dataclasses.fields(Accounting)}
    if bad:
        raise SpecError(
            f"accounting override {sorted(bad)[0]} is not a known field: allowed "
            f"{', '.join(f.name for f in dataclasses.fields(Accounting))}"
        )
    try:
        return Accounting(**{**vals, "mode": data.get("mode", "custom"), **overrides})
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def load_accounting(name_or_path: str = "realistic", profile: str | None = None, **overrides) -> Accounting:
    """The named accounting preset (``conf/accounting/<name>.yaml``: ``sol`` = peak hardware, no
    overheads, the whole HBM; ``realistic`` = engine memory defaults and constants fitted to
    measured serving results) or a YAML path in the same format; ``profile`` an engine profile of
    the preset (its ``profiles: {name: {constant: value}}``, e.g. ``trtllm``, ``sglang``, ``vllm``)
    replacing those constants; ``overrides`` as ``accounting_from_mapping``."""
    data, where = _read_yaml("accounting", name_or_path)
    if profile is not None:
        profiles = data.get("profiles") or {}
        if profile not in profiles:
            raise SpecError(f"{where}: profile = {profile!r} is invalid: allowed {', '.join(profiles) or 'none (no profiles)'}")
        data = {**data, **{k: {"value": v} for k, v in profiles[profile].items()}}
    return accounting_from_mapping(data, where, **overrides)


ECONOMICS_FIELDS = ("price_per_gpu_hour", "board_power")


@dataclasses.dataclass(frozen=True)
class HardwareEconomics:
    """Catalogue metadata beside a ``HardwareSpec``: ``price_per_gpu_hour`` (USD per GPU-hour, a
    default list price with its source) and ``board_power`` (W, the board's rated power), with
    their ``sources``. Inputs of ``physics.serving.cost_per_mtok`` / ``joules_per_token``."""

    price_per_gpu_hour: float
    board_power: float
    sources: tuple[str, str] = ("", "")


def hardware_economics(name_or_path: str, **overrides) -> HardwareEconomics:
    """Price and board power of a catalogue accelerator (``conf/hardware/<name>.yaml``);
    ``overrides`` (``price_per_gpu_hour=``, ``board_power=``; None keeps the catalogue's) replace
    the defaults and are recorded as the source."""
    bad = set(overrides) - set(ECONOMICS_FIELDS)
    if bad:
        raise SpecError(
            f"hardware economics override {sorted(bad)[0]} is not a known field: allowed {', '.join(ECONOMICS_FIELDS)}"
        )
    entry = hardware_entry(name_or_path)
    vals, sources = {}, {}
    for field in ECONOMICS_FIELDS:
        item, where = entry.get(field), entry["_where"]
        if overrides.get(field) is not None:
            item, where = {"value": overrides[field], "source": "override"}, "override"
        if not isinstance(item, dict) or "value" not in item:
            raise SpecError(f"{where}: {field} is missing: it is required ({{value: ..., source: ...}})")
        value = _number(where, field, item["value"], "a positive number")
        if not (0 < value < float("inf")):
            raise SpecError(f"{where}: {field} = {value!r} is invalid: must be a positive number")
        vals[field], sources[field] = value, str(item.get("source", ""))
    return HardwareEconomics(**vals, sources=(sources["price_per_gpu_hour"], sources["board_power"]))
