"""Frozen pytree specs for one evaluation point: model, hardware, partition, workload, accounting.

Every continuous or integer quantity is an array leaf, so any field can be vmapped over or
differentiated; categorical choices are numeric codes (see ``ATTENTION_KINDS``, ``KV_MODES``).
Units are SI throughout: bytes, seconds, bytes/s, FLOP/s; counts are plain numbers.

Validation runs at construction when the leaves are concrete host values (Python numbers or
NumPy arrays, batched or not). Inside ``jit``/``vmap`` the leaves are tracers and validation is
skipped: infeasibility inside the kernel is a mask, never an exception.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from .errors import SpecError
from .xp import namespace

ATTENTION_KINDS = {"mha": 0, "gqa": 1, "mqa": 2, "mla": 3}
KV_MODES = {"none": 0, "kvp": 1, "cp": 2}
FABRICS = {"switched": 0, "mesh": 1, "torus": 2}
STACKS = {"cuda": 0, "rocm": 1, "xla": 2, "neuron": 3}  # software stacks; only rocm has its own factor (rocm_factor)
MAX_TORUS_DIMS = 3  # TPU v4/v5p/v7 are 3D tori, v6e and Trainium2 instances 2D
EXPERT_TRAFFIC = ("physical", "paper-active", "paper-pool")
ROOFLINES = ("phase", "global")
KERNEL_TAUS = ("tau_gemm", "tau_grouped_gemm", "tau_attention", "tau_elementwise")  # Accounting's per-kernel fixed costs, s
KERNEL_BW = ("attention_bw_efficiency", "grouped_gemm_bw_efficiency")  # per-class bandwidth relative to hbm_efficiency
MODES = ("sol", "realistic", "kernel", "layered", "custom")
# Accounting's constants by range: fractions in (0, 1], times (s) and bytes >= 0
ACC_FRACTIONS = ("hbm_usable_fraction", "hbm_efficiency", "flops_efficiency", "fp8_efficiency", "fp4_efficiency")
ACC_FRACTIONS += ("comm_efficiency",)
ACC_TIMES = ("reserve_bytes", "layer_latency", "collective_latency", "a2a_peer_latency", "request_overhead")
ACC_TIMES += ("sequence_latency", "step_latency")


def _host_values(spec) -> dict[str, np.ndarray] | None:
    """The spec's leaves as NumPy arrays, or None when any leaf is not a concrete host value."""
    out = {}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if isinstance(v, bool | int | float | np.number):
            out[f.name] = np.asarray(v, dtype=float)
        elif isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            out[f.name] = v.astype(float)
        elif f.metadata.get("static"):
            continue
        elif isinstance(v, str | bytes):  # never a leaf (JAX's own placeholders are None, object(), ints)
            raise SpecError(f"{type(spec).__name__}.{f.name} = {v!r} is invalid: must be a number, not a string")
        else:
            return None
    return out


def _fail(spec_name: str, field: str, value: Any, allowed: str) -> None:
    bad = np.asarray(value).ravel()[0].item()  # batched: name the first offending value
    raise SpecError(f"{spec_name}.{field} = {bad!r} is invalid: {allowed}")


def _require(spec_name: str, v: dict, field: str, ok: np.ndarray, allowed: str) -> None:
    ok = np.asarray(ok)
    if not ok.all():
        bad = np.broadcast_to(v[field], ok.shape)[~ok]
        _fail(spec_name, field, bad, allowed)


def _is_int(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x) & (np.round(x) == x)


def pytree_spec(cls):
    """Make ``cls`` a frozen dataclass registered as a JAX pytree (static fields via metadata)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls)


def _meta(units: str, long_name: str, label: str, default=dataclasses.MISSING, *, space=None, elasticity=None):
    """A spec field with its metadata: ``units`` (UDUNITS), ``long_name`` (the dataset's), ``label`` (plots),
    and how a sweep varies it: ``space`` ``(position, key)``, the ``grid.hardware_space`` key that
    scales it (``position``: the key's place there), or ``(position, key, tag)`` for absolute values
    (named ``<tag>=<value>``); ``elasticity`` its place among the sensitivities (None: neither)."""
    meta = {"units": units, "long_name": long_name, "label": label, "space": space, "elasticity": elasticity}
    return dataclasses.field(default=default, metadata=meta)


def field_label(cls, name: str) -> str:
    """The plot label of field ``name`` of spec class ``cls`` (the name itself where none is declared)."""
    return next((f.metadata.get("label", name) for f in dataclasses.fields(cls) if f.name == name), name)


def static_field(default):
    return dataclasses.field(default=default, metadata={"static": True})


@pytree_spec
class ModelSpec:
    """Transformer architecture and its serving precision.

    Counts are plain numbers; ``*_bytes`` are bytes per stored value. ``n_layers`` are the
    layers run per decode step (decoder layers); ``n_encoder_layers`` are resident but not run
    while decoding (encoder–decoder models). ``n_dense_layers`` leading decoder layers use the
    dense FFN of width ``d_ff``; the rest are MoE layers with ``n_experts`` routed experts of
    width ``d_ff_expert`` (top-``top_k``) plus shared experts of total width ``shared_d_ff``.
    A dense model has ``n_experts = top_k = 1`` and ``n_dense_layers = n_layers``.

    For MLA, ``head_dim`` is the no-RoPE query/key head size, ``rope_head_dim`` the decoupled
    RoPE part, ``kv_lora_rank``/``q_lora_rank`` the compressed ranks (``q_lora_rank = 0``: no
    query compression). For MHA/GQA/MQA, ``head_dim`` includes RoPE and MLA fields are unused.
    """

    n_layers: Any
    d_model: Any
    vocab_size: Any
    n_heads: Any
    n_kv_heads: Any
    head_dim: Any
    d_ff: Any
    attn_kind: Any = 1.0  # ATTENTION_KINDS code
    v_head_dim: Any = 0.0  # 0 -> same as head_dim
    rope_head_dim: Any = 0.0
    q_lora_rank: Any = 0.0
    kv_lora_rank: Any = 0.0
    n_dense_layers: Any = -1.0  # -1 -> all layers dense (set by the loader)
    n_encoder_layers: Any = 0.0
    cross_attention: Any = 0.0  # 1: decoder layers also attend to the encoder output
    tied_embeddings: Any = 0.0
    ffn_matrices: Any = 3.0  # 3: gated (SwiGLU/GeGLU), 2: plain (ReLU/GeLU)
    n_experts: Any = 1.0
    top_k: Any = 1.0
    d_ff_expert: Any = 0.0
    shared_d_ff: Any = 0.0
    weight_bytes: Any = 2.0
    kv_bytes: Any = 2.0
    act_bytes: Any = 2.0  # activations on the wire (collectives)
    expert_bytes: Any = 0.0  # routed experts' weights; 0 -> weight_bytes
    embed_bytes: Any = 0.0  # input table and LM head (checkpoint dtype); 0 -> weight_bytes
    gemm_bytes: Any = 0.0  # input precision of weight GEMMs (W8A16: 2); 0 -> each weight's own dtype
    attn_bytes: Any = 0.0  # attention matmul precision (FP8 KV dequantised to BF16: 2); 0 -> kv_bytes
    dispatch_bytes: Any = 0.0  # EP dispatch payload (FP8 dispatch: 1); 0 -> act_bytes
    mtp_layers: Any = 0.0  # multi-token-prediction modules (one decoder layer each), resident when drafting
    attn_gate: Any = 0.0  # 1: a sigmoid output gate doubles the query projection (Qwen3-Next's gated attention)
    # Per-layer attention pattern, as layer counts per kind (the rest of the n_layers are full attention;
    # costs are per-layer sums, so counts suffice: see docs/cost-model.md, "Layer patterns")
    n_sliding_layers: Any = 0.0  # sliding-window layers: attend to the last sliding_window tokens
    sliding_window: Any = 0.0  # W, tokens
    n_chunked_layers: Any = 0.0  # chunked-local layers (Llama-4): attend within their chunk of chunk_size tokens
    chunk_size: Any = 0.0  # C, tokens
    n_sparse_layers: Any = 0.0  # sparse top-k layers (DeepSeek Sparse Attention): store all, read sparse_top_k
    sparse_top_k: Any = 0.0  # tokens each query reads (index_topk)
    index_heads: Any = 0.0  # lightning-indexer heads (index_n_heads)
    index_head_dim: Any = 0.0  # indexer key/query size; the indexer caches one key of this size per token
    n_linear_layers: Any = 0.0  # linear-attention / state-space layers (Gated DeltaNet): a fixed state per sequence
    linear_key_heads: Any = 0.0
    linear_key_dim: Any = 0.0
    linear_value_heads: Any = 0.0
    linear_value_dim: Any = 0.0
    linear_conv_kernel: Any = 0.0  # short causal convolution width (its last kernel-1 inputs are state too)

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        n = "ModelSpec"
        for f in ("n_layers", "d_model", "vocab_size", "n_heads", "n_kv_heads", "head_dim", "n_experts", "top_k"):
            _require(n, v, f, _is_int(v[f]) & (v[f] >= 1), "must be a positive integer")
        for f in ("d_ff", "v_head_dim", "rope_head_dim", "q_lora_rank", "kv_lora_rank", "d_ff_expert", "shared_d_ff"):
            _require(n, v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be finite and >= 0")
        _require(n, v, "attn_kind", np.isin(v["attn_kind"], list(ATTENTION_KINDS.values())), f"allowed codes {ATTENTION_KINDS}")
        _require(
            n,
            v,
            "n_dense_layers",
            _is_int(v["n_dense_layers"]) & (v["n_dense_layers"] >= 0) & (v["n_dense_layers"] <= v["n_layers"]),
            "must be an integer in [0, n_layers]",
        )
        _require(
            n, v, "n_encoder_layers", _is_int(v["n_encoder_layers"]) & (v["n_encoder_layers"] >= 0), "must be an integer >= 0"
        )
        for f in ("cross_attention", "tied_embeddings", "attn_gate"):
            _require(n, v, f, np.isin(v[f], [0, 1]), "must be 0 or 1")
        _require(n, v, "ffn_matrices", np.isin(v["ffn_matrices"], [2, 3]), "must be 2 (plain) or 3 (gated)")
        _require(n, v, "top_k", v["top_k"] <= v["n_experts"], "top_k must not exceed n_experts")
        _require(n, v, "n_kv_heads", v["n_kv_heads"] <= v["n_heads"], "must not exceed n_heads")
        gqa = v["attn_kind"] != ATTENTION_KINDS["mla"]
        _require(
            n, v, "n_kv_heads", ~gqa | (np.mod(v["n_heads"], v["n_kv_heads"]) == 0), "n_heads must be a multiple of n_kv_heads"
        )
        mla = ~gqa
        _require(n, v, "kv_lora_rank", ~mla | (v["kv_lora_rank"] >= 1), "MLA needs kv_lora_rank >= 1")
        _require(n, v, "cross_attention", ~mla | (v["cross_attention"] == 0), "cross-attention is modelled for MHA/GQA/MQA only")
        moe = v["n_experts"] > 1
        _require(n, v, "d_ff_expert", ~moe | (v["d_ff_expert"] > 0), "an MoE model needs d_ff_expert > 0")
        has_dense = v["n_dense_layers"] > 0
        _require(n, v, "d_ff", ~has_dense | (v["d_ff"] > 0), "dense FFN layers need d_ff > 0")
        for f in ("weight_bytes", "kv_bytes", "act_bytes"):
            _require(n, v, f, np.isfinite(v[f]) & (v[f] > 0), "must be > 0 bytes per value")
        for f in ("expert_bytes", "embed_bytes", "gemm_bytes", "attn_bytes", "dispatch_bytes"):
            _require(n, v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be >= 0 bytes per value (0: the default dtype)")
        _require(n, v, "mtp_layers", _is_int(v["mtp_layers"]) & (v["mtp_layers"] >= 0), "must be an integer >= 0")
        _validate_pattern(n, v)


PATTERN_COUNTS = {
    "n_sliding_layers": "sliding_window",
    "n_chunked_layers": "chunk_size",
    "n_sparse_layers": "sparse_top_k",
    "n_linear_layers": "linear_value_heads",
}


def _validate_pattern(n: str, v: dict) -> None:
    """Layer-pattern fields: counts are whole layers summing to at most n_layers; a kind that has layers
    needs its size (window, chunk, top-k, state) > 0; sparse layers need MLA or GQA as their base."""
    for f, size in PATTERN_COUNTS.items():
        _require(n, v, f, _is_int(v[f]) & (v[f] >= 0), "must be an integer >= 0 (layers of this kind)")
        _require(n, v, size, np.isfinite(v[size]) & (v[size] >= 0), "must be finite and >= 0")
        _require(n, v, size, (v[f] == 0) | (v[size] > 0), f"must be > 0 when {f} > 0")
    for f in ("index_heads", "index_head_dim", "linear_key_heads", "linear_key_dim", "linear_value_dim", "linear_conv_kernel"):
        _require(n, v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be finite and >= 0")
    lin = v["n_linear_layers"] > 0
    for f in ("linear_key_heads", "linear_key_dim", "linear_value_dim"):
        _require(n, v, f, ~lin | (v[f] > 0), "must be > 0 when n_linear_layers > 0")
    total = sum(v[f] for f in PATTERN_COUNTS)
    _require(
        n,
        v,
        "n_layers",
        total <= v["n_layers"],
        "the pattern's sliding, chunked, sparse and linear layers must not exceed n_layers",
    )


@pytree_spec
class HardwareSpec:
    """One accelerator and its fabric. SI units: bytes, bytes/s, FLOP/s (dense), seconds.

    Link bandwidths are per GPU, per direction (what one ring hop can move). ``island_size`` is
    the number of GPUs in one high-bandwidth domain (an 8-GPU NVLink/xGMI node, a 72-GPU NVL72
    rack, a TPU slice). ``fabric`` 0 is switched (NVSwitch: any pair at ``intra_bw``), 1 a full
    mesh (xGMI: a group gets its direct links, ``link_bw`` each), 2 a torus of ``torus_dims``
    dimensions (TPU ICI, Trainium NeuronLink: two ``link_bw`` links per dimension, one each way
    round the ring; ``intra_bw`` caps their sum). Between islands every GPU has ``inter_bw`` of
    its own (NIC, DCN, EFA). ``flops_fp4`` is 0 without FP4 tensor cores.
    """

    # metadata (``_meta``): units, long_name (hw_<field>), label (plots), grid.hardware_space key, elasticity
    hbm_bytes: Any = _meta("byte", "HBM capacity per GPU", "HBM capacity", space=(1, "hbm_bytes"), elasticity=1)
    hbm_bw: Any = _meta("byte s-1", "HBM bandwidth per GPU", "HBM bandwidth", space=(0, "hbm_bw"), elasticity=0)
    flops_bf16: Any = _meta("s-1", "dense BF16 FLOP per second per GPU", "BF16 FLOP/s", space=(2, "flops"), elasticity=2)
    flops_fp8: Any = _meta("s-1", "dense FP8 FLOP per second per GPU", "FP8 FLOP/s", space=(2, "flops"), elasticity=3)
    intra_bw: Any = _meta(
        "byte s-1",
        "intra-node link bandwidth per GPU per direction",
        "intra-node bandwidth",
        space=(3, "intra_bw"),
        elasticity=4,
    )
    intra_latency: Any = _meta("s", "intra-node ring hop latency", "intra-node latency", space=(5, "intra_latency"), elasticity=5)
    island_size: Any = _meta("1", "GPUs per node-local island", "island size", space=(7, "island_size", "island"))
    inter_bw: Any = _meta(
        "byte s-1",
        "inter-node bandwidth per GPU per direction",
        "inter-node bandwidth",
        space=(4, "inter_bw"),
        elasticity=6,
    )
    inter_latency: Any = _meta("s", "inter-node ring hop latency", "inter-node latency", space=(6, "inter_latency"), elasticity=7)
    flops_fp4: Any = _meta("s-1", "dense FP4 FLOP per second per GPU (0: no FP4 tensor cores)", "FP4 FLOP/s", 0.0)
    fabric: Any = _meta("1", "island fabric: 0 switched, 1 full mesh, 2 torus", "fabric", 0.0)
    link_bw: Any = _meta("byte s-1", "per-link bandwidth of a mesh or torus island", "link bandwidth", 0.0)
    # dimensions of a torus fabric (1..MAX_TORUS_DIMS); unused otherwise
    torus_dims: Any = _meta("1", "dimensions of a torus island (0: not a torus)", "torus dimensions", 0.0)
    stack: Any = _meta("1", "software stack: 0 CUDA, 1 ROCm, 2 XLA, 3 Neuron", "software stack", 0.0)

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        for f in ("hbm_bytes", "hbm_bw", "flops_bf16", "flops_fp8", "intra_bw", "inter_bw"):
            _require("HardwareSpec", v, f, np.isfinite(v[f]) & (v[f] > 0), "must be > 0")
        _require(
            "HardwareSpec",
            v,
            "flops_fp4",
            np.isfinite(v["flops_fp4"]) & (v["flops_fp4"] >= 0),
            "must be >= 0 (0: no FP4 tensor cores)",
        )
        _require("HardwareSpec", v, "fabric", np.isin(v["fabric"], list(FABRICS.values())), f"allowed codes {FABRICS}")
        linked = np.isin(v["fabric"], [FABRICS["mesh"], FABRICS["torus"]])
        _require(
            "HardwareSpec",
            v,
            "link_bw",
            np.isfinite(v["link_bw"]) & (~linked | (v["link_bw"] > 0)),
            "a mesh or torus fabric needs link_bw > 0 (bytes/s per link)",
        )
        torus = v["fabric"] == FABRICS["torus"]
        _require(
            "HardwareSpec",
            v,
            "torus_dims",
            _is_int(v["torus_dims"])
            & (v["torus_dims"] >= 0)
            & (v["torus_dims"] <= MAX_TORUS_DIMS)
            & (~torus | (v["torus_dims"] >= 1)),
            f"must be an integer in [1, {MAX_TORUS_DIMS}] for a torus fabric (0 otherwise)",
        )
        for f in ("intra_latency", "inter_latency"):
            _require("HardwareSpec", v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be >= 0 seconds")
        island = _is_int(v["island_size"]) & (v["island_size"] >= 1)
        _require("HardwareSpec", v, "island_size", island, "must be a positive integer")
        _require("HardwareSpec", v, "stack", np.isin(v["stack"], list(STACKS.values())), f"allowed codes {STACKS}")


@pytree_spec
class Partition:
    """How one replica's GPUs are split, and how many replicas share the cluster.

    Attention runs as ``tp`` (heads) x ``dp_attn`` (sequences) x ``kvp`` (KV sequence shards,
    ``kv_mode`` 1 = KVP/Helix, 2 = CP pass-Q); the FFN runs over the same ``G = tp*dp_attn*kvp``
    GPUs of a stage as ``ep`` expert groups x ``G/ep``-way tensor parallel, each group holding
    ``(n_experts + redundant_experts)/ep`` expert slots (EPLB-style redundant copies). Dense FFN
    layers and the LM head run ``dense_tp``-way tensor parallel, replicated over the ``G/dense_tp``
    groups (0: over the whole stage). ``pp`` pipeline stages (the largest holds
    ``ceil(n_layers/pp)`` layers) make a replica of ``N = pp*G`` GPUs; ``dp`` replicas make the cluster.
    """

    tp: Any = 1.0
    ep: Any = 1.0
    pp: Any = 1.0
    dp: Any = 1.0
    dp_attn: Any = 1.0
    kvp: Any = 1.0
    kv_mode: Any = 0.0
    dense_tp: Any = 0.0
    redundant_experts: Any = 0.0

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        for f in ("tp", "ep", "pp", "dp", "dp_attn", "kvp"):
            _require("Partition", v, f, _is_int(v[f]) & (v[f] >= 1), "must be a positive integer")
        for f in ("dense_tp", "redundant_experts"):
            _require("Partition", v, f, _is_int(v[f]) & (v[f] >= 0), "must be an integer >= 0")
        _require("Partition", v, "kv_mode", np.isin(v["kv_mode"], list(KV_MODES.values())), f"allowed codes {KV_MODES}")
        _require("Partition", v, "kvp", (v["kv_mode"] != 0) | (v["kvp"] == 1), "kvp > 1 needs kv_mode kvp (1) or cp (2)")
        g = v["tp"] * v["dp_attn"] * v["kvp"]
        _require("Partition", v, "ep", np.mod(g, v["ep"]) == 0, "ep must divide tp*dp_attn*kvp")
        _require(
            "Partition",
            v,
            "dense_tp",
            (v["dense_tp"] == 0) | (np.mod(g, np.maximum(v["dense_tp"], 1)) == 0),
            "dense_tp must divide tp*dp_attn*kvp (0: all of them)",
        )

    @property
    def gpus_per_stage(self):
        return self.tp * self.dp_attn * self.kvp

    @property
    def dense_degree(self):
        """Tensor-parallel degree of the dense FFN layers and the LM head (``dense_tp``, 0: the stage)."""
        g = self.gpus_per_stage
        return namespace(self.dense_tp, g).where(self.dense_tp > 0, self.dense_tp, g)

    @property
    def gpus_per_replica(self):
        return self.pp * self.gpus_per_stage

    @property
    def num_gpus(self):
        return self.dp * self.gpus_per_replica


@pytree_spec
class Workload:
    """Decode workload: ``context`` tokens per sequence; ``batch`` sequences per replica
    (<= 0 means "serve at B_max"); ``kappa`` the quality factor carried for baselines.
    Speculative decoding / multi-token prediction: each step verifies ``draft_tokens`` drafted
    tokens per sequence and keeps ``accepted`` of them on average (tokens per step = 1 + accepted)."""

    context: Any
    batch: Any = 0.0
    kappa: Any = 5.0
    draft_tokens: Any = 0.0
    accepted: Any = 0.0

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        _require("Workload", v, "context", np.isfinite(v["context"]) & (v["context"] >= 1), "must be >= 1 token")
        _require("Workload", v, "batch", np.isfinite(v["batch"]), "must be finite (<= 0 means B_max)")
        _require("Workload", v, "kappa", np.isfinite(v["kappa"]) & (v["kappa"] > 0), "must be > 0")
        _require_speculation("Workload", v)


def _require_speculation(spec: str, v: dict) -> None:
    """Speculative decoding fields (``Workload``, ``ServingWorkload``): whole drafted tokens, and a
    mean accepted count no larger."""
    _require(spec, v, "draft_tokens", _is_int(v["draft_tokens"]) & (v["draft_tokens"] >= 0), "must be an integer >= 0")
    _require(
        spec,
        v,
        "accepted",
        np.isfinite(v["accepted"]) & (v["accepted"] >= 0) & (v["accepted"] <= v["draft_tokens"]),
        "must be in [0, draft_tokens] (mean accepted draft tokens per step)",
    )


@pytree_spec
class Accounting:
    """Named free constants of the cost model and its static switches.

    ``expert_traffic``: ``"physical"`` reads each touched expert once per step (expected
    distinct experts under uniform routing, bent by ``routing_skew``). The qs paper's eq. 4 charges
    ``W / R`` per token with ``R = b*k/E``; ``"paper-active"`` takes W as the active FFN weights (its
    eq. 17: the whole expert pool is read once per step, at any batch), ``"paper-pool"`` as the whole
    pool (what its Table 5 needs: E/k times the pool per step — more than is resident).
    ``integer_batch``: B_max is floored to whole sequences (False: continuous, differentiable).
    ``roofline``: ``"phase"`` runs attention, FFN and LM-head phases one after another, each at
    ``max(compute, HBM)`` (monotone in every bandwidth); ``"global"`` is the qs paper's eq. 19,
    one ``max(T_compute, T_HBM)`` over the step (with ``overlap > 0`` a faster HBM can shrink a
    phase's window and expose more communication).
    ``mode`` names the preset (``conf/accounting/``): ``"sol"`` is speed of light (every
    efficiency 1, no overheads, the whole HBM), ``"realistic"`` carries constants fitted to
    measured serving results on top of ``"kernel"``, the kernel-structured step (per-kernel fixed costs and
    per-class efficiencies from kernel-level measurements, ``conf/accounting/kernel.yaml``); ``"layered"`` the
    previous release's global fit (a per-layer latency); ``"custom"`` anything else.
    ``layer_patterns``: cost the sliding, chunked, sparse and linear layers of a model's pattern as
    phases of their own (True, always correct); False drops those phases at trace time and costs every
    layer as full attention, which is exact, and faster, only for models without a pattern: the sweep
    engine sets it False when no model of its grid has one.
    """

    hbm_usable_fraction: Any = 1.0  # fraction of HBM capacity usable for weights + KV
    reserve_bytes: Any = 0.0  # per GPU, held back (activations, workspace)
    kv_scale: Any = 1.0  # multiplier on stored KV bytes
    routing_skew: Any = 0.0  # 0 uniform; s in [0, 1): routing concentrates on E*(1-s) experts
    overlap: Any = 0.0  # fraction of each phase's compute window that hides its collectives
    hbm_efficiency: Any = 1.0  # sustained / peak HBM bandwidth
    flops_efficiency: Any = 1.0  # sustained / peak FLOP/s
    layer_latency: Any = 0.0  # s of fixed overhead per layer per microbatch (launches, sync)
    fp8_efficiency: Any = 1.0  # FP8 tensor-core efficiency relative to flops_efficiency
    fp4_efficiency: Any = 1.0  # FP4 tensor-core efficiency relative to flops_efficiency
    comm_efficiency: Any = 1.0  # achieved / nominal link bandwidth (NVLink, xGMI, NIC)
    collective_latency: Any = 0.0  # s of fixed launch cost per collective call (beyond the per-step alpha)
    a2a_peer_latency: Any = 0.0  # s per peer of a direct all-to-all (per-destination work)
    grouped_gemm_efficiency: Any = 1.0  # routed-expert (grouped) GEMMs relative to dense GEMMs
    attention_efficiency: Any = 1.0  # attention score/value and linear-state FLOPs relative to dense GEMMs
    sequence_latency: Any = 0.0  # s of host work per sequence per step per attention-DP rank (scheduling, sampling)
    step_latency: Any = 0.0  # s of engine host work per step (scheduling, the step's launch, sampling), once per step
    request_overhead: Any = 0.0  # s per request before its first token beyond the model's passes (API, scheduling)
    warmup_share: Any = 0.0  # share of a closed-loop benchmark's requests in its start-up wave (served.py)
    rocm_factor: Any = 1.0  # device time of a step on the ROCm stack (HardwareSpec.stack 1) over the kernel model's
    # Kernel-structured step (docs/cost-model.md, "Kernel-structured step"; 0 and 1: not charged): s per kernel call
    # of each class, times physics/kernels.KERNEL_COUNTS per layer; KV/state and routed-expert bandwidth vs hbm_efficiency
    tau_gemm: Any = 0.0  # s per dense GEMM (and MLA BMM) kernel
    tau_grouped_gemm: Any = 0.0  # s per fused routed-expert module (permute, grouped GEMMs, activation, finalize)
    tau_attention: Any = 0.0  # s per attention kernel (decode/prefill attention, DSA indexer scores, linear-state update)
    tau_elementwise: Any = 0.0  # s per memory-bound small kernel (norms, activation, convolution, top-k, embedding)
    attention_bw_efficiency: Any = 1.0  # KV / state streaming bandwidth of attention kernels relative to hbm_efficiency
    grouped_gemm_bw_efficiency: Any = 1.0  # routed-expert weight streaming relative to hbm_efficiency
    mode: str = static_field("sol")  # the preset these constants came from: sol, realistic, kernel, layered, or custom
    expert_traffic: str = static_field("physical")
    integer_batch: bool = static_field(True)
    roofline: str = static_field("phase")
    layer_patterns: bool = static_field(True)  # False: every layer is costed as full attention (see above)

    def __post_init__(self):
        if not isinstance(self.layer_patterns, bool):
            raise SpecError(f"Accounting.layer_patterns = {self.layer_patterns!r} is invalid: must be true or false")
        if self.expert_traffic not in EXPERT_TRAFFIC:
            raise SpecError(f"Accounting.expert_traffic = {self.expert_traffic!r} is invalid: allowed {EXPERT_TRAFFIC}")
        if self.mode not in MODES:
            raise SpecError(f"Accounting.mode = {self.mode!r} is invalid: allowed {MODES}")
        if self.roofline not in ROOFLINES:
            raise SpecError(f"Accounting.roofline = {self.roofline!r} is invalid: allowed {ROOFLINES}")
        v = _host_values(self)
        if v is None:
            return
        for f in ACC_FRACTIONS:
            _require("Accounting", v, f, (v[f] > 0) & (v[f] <= 1), "must be in (0, 1]")
        for f in (*ACC_TIMES, *KERNEL_TAUS):
            _require("Accounting", v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be >= 0")
        for f in ("kv_scale", "grouped_gemm_efficiency", "attention_efficiency", "rocm_factor", *KERNEL_BW):
            _require("Accounting", v, f, np.isfinite(v[f]) & (v[f] > 0), "must be > 0")
        _require("Accounting", v, "routing_skew", (v["routing_skew"] >= 0) & (v["routing_skew"] < 1), "must be in [0, 1)")
        _require("Accounting", v, "overlap", (v["overlap"] >= 0) & (v["overlap"] <= 1), "must be in [0, 1]")
        _require("Accounting", v, "warmup_share", (v["warmup_share"] >= 0) & (v["warmup_share"] <= 1), "must be in [0, 1]")


def replace(spec, **changes):
    """``dataclasses.replace`` that also works on frozen pytree specs (re-validates)."""
    return dataclasses.replace(spec, **changes)
