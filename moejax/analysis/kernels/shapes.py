"""Kernel-level calibration data: loading the vendored tables and each kernel's bytes and FLOPs.

The tables (``moejax/data/reference/kernels/*.csv``, sources and subsetting in the README beside
them) hold measured kernel times, one row per measurement, each with a ``source``. This module reads
them into a ``Rows`` table of plain NumPy columns and computes, per row, the work the per-kernel model
``t = τ + max(bytes / (η_bw · BW), FLOPs / (η_class · F))`` needs:

- ``bytes``: HBM traffic of the kernel (B), ``flops``: its arithmetic (FLOP), both from the shape;
- ``t_bw = bytes / hbm_bw`` and ``t_flop = flops / F_peak(dtype)`` (s), the speed-of-light times on the
  row's hardware (``moejax.catalogue`` peaks);
- for collectives ``wire_bytes`` (B per rank on the busiest link) and ``t_wire`` (s at the nominal link
  bandwidth, ``intra_bw`` inside an island, ``inter_bw`` across); an all-reduce also has its second
  algorithm, ``t_ring`` (s) and ``ring_latency`` (s), as ``moejax.physics.collectives.all_reduce`` runs it
  (``all_reduce_ring``; ``ring_latency`` is inf for every other row).

Every formula below has a worked example in its docstring, repeated in tests/test_kernel_calibration.py.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...catalogue import ROOT, load_hardware
from ...physics.fabrics.switched import ring_terms

DATA_DIR = ROOT / "moejax" / "data" / "reference" / "kernels"
FILES = ("gemm.csv", "moe.csv", "attention.csv", "elementwise.csv", "collectives.csv")
COMPUTE_CLASSES = (
    "gemm",
    "grouped_gemm",
    "attn_decode_gqa",
    "attn_decode_mla",
    "attn_prefill_gqa",
    "attn_prefill_mla",
    "elementwise",
)
COLLECTIVE_CLASSES = (
    "all_reduce",
    "all_gather",
    "alltoall",
    "ep_dispatch_ll",
    "ep_combine_ll",
    "ep_dispatch_normal",
    "ep_combine_normal",
)
# bytes per stored value (block scales included, as moejax.catalogue.DTYPE_BYTES) and the Tensor Core peak each dtype runs at
OPERAND_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp8_block": 1.0 + 4.0 / 128, "nvfp4": 0.5625}
PEAK_FIELD = {"bf16": "flops_bf16", "fp16": "flops_bf16", "fp8": "flops_fp8", "fp8_block": "flops_fp8", "nvfp4": "flops_fp4"}
OUT_BYTES = 2.0  # GEMM outputs and attention queries/outputs are BF16
FAMILY = {
    "h100-sxm": "hopper",
    "h200": "hopper",
    "h800": "hopper",
    "h20": "hopper",
    "b200": "blackwell",
    "gb200-nvl72": "blackwell",
}


@dataclass
class Rows:
    """A loaded table: ``cols`` maps a column name to a NumPy array (strings as object arrays, numbers as float)."""

    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.cols["time_s"])

    def __getitem__(self, name: str) -> np.ndarray:
        """One column."""
        return self.cols[name]

    def take(self, mask: np.ndarray) -> Rows:
        """The rows where ``mask`` (a boolean or index array) selects."""
        return Rows({k: v[mask] for k, v in self.cols.items()})


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of one CSV file as dictionaries of strings."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def load(files: tuple[str, ...] = FILES, data_dir: Path = DATA_DIR) -> Rows:
    """All rows of ``files`` in one table (missing cells: ``""`` for text, 0 for numbers), with work columns added."""
    raw = [r for name in files for r in read_csv(Path(data_dir) / name)]
    names = list(dict.fromkeys(c for r in raw for c in r))
    text = {"kernel_class", "hardware", "dtype", "kv_dtype", "op", "impl", "source"}
    cols = {}
    for c in names:
        vals = [r.get(c, "") or "" for r in raw]
        cols[c] = np.array(vals, dtype=object) if c in text else np.array([float(v) if v else 0.0 for v in vals])
    for c in text - set(cols):
        cols[c] = np.array([""] * len(raw), dtype=object)
    rows = Rows(cols)
    add_work(rows)
    return rows


def gemm_work(m, n, k, groups, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Bytes (B) and FLOPs of ``groups`` GEMMs ``[m, k] @ [k, n]`` with operands in ``dtype`` and a BF16 output.

    bytes = groups · (m·k·a + n·k·a + m·n·2), FLOPs = 2 · groups · m · n · k, ``a`` = OPERAND_BYTES[dtype].
    Example (DeepGEMM README row, FP8 1×128 blocks): m = 64, n = 4096, k = 7168, one group:
    FLOPs = 2·64·4096·7168 = 3,758,096,384; bytes = 1.03125·(64·7168 + 4096·7168) + 2·64·4096 = 31,275,008 B.
    """
    a = np.vectorize(OPERAND_BYTES.__getitem__, otypes=[float])(dtype)
    return groups * ((m * k + n * k) * a + m * n * OUT_BYTES), 2.0 * groups * m * n * k


def moe_work(tokens, hidden, inter, topk, experts, tp, ep, gated, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Bytes (B) and FLOPs on one rank of a fused MoE layer (two grouped GEMMs) at ``tokens`` tokens per rank.

    Per rank: E_l = experts/ep local experts of width I_l = inter/tp; C = tokens·topk/ep routed copies
    (balanced routing); touched local experts E_l·(1 − (1 − topk/experts)^tokens) (uniform routing, as
    the step cost). Weights: touched · (2 + gated) · hidden · I_l · w bytes; activations: each copy's
    GEMM inputs and outputs in BF16, C · (2·hidden + (2 + gated)·I_l) · 2 bytes; FLOPs 2 · C · (2 + gated) · hidden · I_l.
    Example (DeepSeek-V3 layer, FP8 blocks, EP8, one token): E_l = 32, touched = 32·(1 − (1 − 8/256)) = 1,
    weights = 1.03125·3·7168·2048 = 45,416,448 B, activations = (2·7168 + 3·2048)·2 = 40,960 B,
    FLOPs = 2·1·3·7168·2048 = 88,080,384.
    """
    w = np.vectorize(OPERAND_BYTES.__getitem__, otypes=[float])(dtype)
    local, width, copies = experts / ep, inter / tp, tokens * topk / ep
    touched = local * (1.0 - (1.0 - topk / experts) ** tokens)
    weights = touched * (2.0 + gated) * hidden * width * w
    acts = copies * (2.0 * hidden + (2.0 + gated) * width) * OUT_BYTES
    return weights + acts, 2.0 * copies * (2.0 + gated) * hidden * width


def attention_work(kernel_class: str, batch, q_len, kv_len, heads, kv_heads, head_dim, kv_lora_rank, rope_dim, kv_dtype):
    """Bytes (B) and FLOPs of one attention kernel call (per GPU: ``heads`` are the local query heads).

    - ``attn_decode_gqa``: K and V read once, queries and outputs in BF16:
      bytes = b·L·2·H_kv·d·c + b·H·d·2·2, FLOPs = 4·b·H·d·L (QKᵀ and PV).
    - ``attn_prefill_gqa`` (causal, S = q_len = kv_len): bytes = b·S·(2·H·d·2 + 2·H_kv·d·c),
      FLOPs = 4·b·H·d·S(S+1)/2.
    - ``attn_decode_mla`` (absorbed, one latent head of r + ρ values): bytes = b·L·(r+ρ)·c + b·H·(2r+ρ)·2,
      FLOPs = 2·b·H·L·(2r + ρ).
    - ``attn_prefill_mla`` (unabsorbed MHA, q/k dim d + ρ, v and output dim d, all BF16):
      bytes = b·S·H·(2(d+ρ) + 2d)·2, FLOPs = 2·b·H·S(S+1)/2·((d+ρ) + d).
    ``c`` is the KV cache's bytes per value (BF16 2, FP8 1).
    Example (Llama-3-70B on TP8, decode, b = 8, L = 4096, H = 8, H_kv = 1, d = 128, BF16 cache):
    bytes = 8·4096·2·1·128·2 + 8·8·128·4 = 16,809,984 B; FLOPs = 4·8·8·128·4096 = 134,217,728.
    Example (DeepSeek-V3 MLA decode, b = 1, L = 4096, H = 128, r = 512, ρ = 64, BF16): bytes =
    4096·576·2 + 128·1088·2 = 4,997,120 B; FLOPs = 2·128·4096·1088 = 1,140,850,688.
    """
    c = np.vectorize(OPERAND_BYTES.__getitem__, otypes=[float])(kv_dtype)
    b, h, d, r, rho = batch, heads, head_dim, kv_lora_rank, rope_dim
    causal = q_len * (q_len + 1) / 2.0
    out = {
        "attn_decode_gqa": (b * kv_len * 2 * kv_heads * d * c + b * h * d * 2 * OUT_BYTES, 4.0 * b * h * d * kv_len),
        "attn_prefill_gqa": (b * q_len * (2 * h * d * OUT_BYTES + 2 * kv_heads * d * c), 4.0 * b * h * d * causal),
        "attn_decode_mla": (b * kv_len * (r + rho) * c + b * h * (2 * r + rho) * OUT_BYTES, 2.0 * b * h * kv_len * (2 * r + rho)),
        "attn_prefill_mla": (b * q_len * h * ((d + rho) * 2 + d * 2) * OUT_BYTES, 2.0 * b * h * causal * ((d + rho) + d)),
    }
    return out[kernel_class]


def elementwise_work(elements, bytes_per_element) -> tuple[np.ndarray, np.ndarray]:
    """Bytes (B) of a streaming kernel: elements · bytes per element read and written; no FLOPs counted.

    Example (static FP8 quantisation of a 4096 × 7168 BF16 matrix: read 2 B, write 1 B per value):
    bytes = 29,360,128 · 3 = 88,080,384 B, FLOPs = 0.
    """
    return elements * bytes_per_element, 0.0 * elements


def collective_wire(kernel_class: str, message_bytes, ranks, tokens, hidden, topk, island):
    """Bytes per rank that cross the in-island and the out-of-island links for one collective (B, B).

    - NCCL-tests sizes (``message_bytes`` = the per-rank buffer): all-reduce (p−1) · n (one-shot: each
      rank reads its peers' buffers; the ring is ``all_reduce_ring``), all-gather and all-to-all
      (p−1)/p · n; all inside one island here.
    - DeepEP dispatch (FP8 + one FP32 scale per 128: 1.03125 B/value) and combine (BF16): each rank sends
      tokens·topk copies of ``hidden`` values; a share (p−1)/p goes to other ranks, of which the peers in
      the island take (min(p, island) − 1)/p and the rest, (p − min(p, island))/p, crosses the NIC.
    Example (DeepSeek-V3 low-latency dispatch, EP16 over two 8-GPU islands, 128 tokens): copies =
    128·8·7168·1.03125 = 7,569,408 B; in-island 7/16 of it = 3,311,616 B, out-of-island 8/16 = 3,784,704 B.
    Example (all-reduce of 1 MiB on 8 ranks): one-shot 7·1,048,576 = 7,340,032 B in-island.
    """
    p = ranks
    inside = np.minimum(p, island)
    if kernel_class.startswith("ep_"):
        per = 1.0 + 4.0 / 128 if "dispatch" in kernel_class else 2.0
        total = tokens * topk * hidden * per
        return total * (inside - 1) / p, total * (p - inside) / p
    factor = (p - 1) if kernel_class == "all_reduce" else (p - 1) / p
    return factor * message_bytes, 0.0 * message_bytes


def all_reduce_ring(message_bytes, ranks, intra_bw, intra_latency):
    """(wire time at the nominal link bandwidth, fixed latency beyond the one-shot's) of a ring
    all-reduce inside one island, in s: ``2(p−1)/p · n / intra_bw`` and ``(2p − 3)·α`` (a ring pays
    ``2(p−1)`` hops of ``α = intra_latency`` where the one-shot pays one). The fit's all-reduce is
    ``τ + min(t_wire/η_bw, ring_latency + t_ring/η_bw)``: ``physics.collectives.all_reduce`` with
    ``τ = intra_latency + collective_latency`` and ``η_bw = comm_efficiency``.

    Example (1 MiB on 8 ranks, 450 GB/s, α = 2 µs): 1,835,008 B / 450e9 = 4.078 µs and 26 µs.
    """
    fixed, per_byte = ring_terms(ranks, intra_latency, intra_bw)  # the cost model's ring
    return per_byte * message_bytes, fixed - intra_latency


def add_work(rows: Rows) -> None:
    """Add ``bytes``, ``flops``, ``t_bw``, ``t_flop`` (compute classes) and ``t_wire`` (collectives) columns in place."""
    n = len(rows)
    cls = rows["kernel_class"]
    nbytes, flops, t_bw, t_flop, t_wire, t_ring = (np.zeros(n) for _ in range(6))
    ring_latency = np.full(n, np.inf)
    specs = {h: load_hardware(h) for h in sorted(set(rows["hardware"]))}
    for i in range(n):
        c, hw = cls[i], specs[rows["hardware"][i]]
        g = {k: v[i] for k, v in rows.cols.items()}
        if c == "gemm" or (c == "grouped_gemm" and g["groups"] > 0):
            nbytes[i], flops[i] = gemm_work(g["m"], g["n"], g["k"], g["groups"], g["dtype"])
        elif c == "grouped_gemm":
            nbytes[i], flops[i] = moe_work(
                g["tokens"], g["hidden"], g["inter"], g["topk"], g["experts"], g["tp"], g["ep"], g["gated"], g["dtype"]
            )
        elif c.startswith("attn_"):
            args = [
                g[k]
                for k in ("batch", "q_len", "kv_len", "heads", "kv_heads", "head_dim", "kv_lora_rank", "rope_dim", "kv_dtype")
            ]
            nbytes[i], flops[i] = attention_work(c, *args)
        elif c == "elementwise":
            nbytes[i], flops[i] = elementwise_work(g["elements"], g["bytes_per_element"])
        else:
            inside, outside = collective_wire(
                c, g["message_bytes"], g["ranks"], g["tokens"], g["hidden"], g["topk"], hw.island_size
            )
            nbytes[i] = inside + outside
            t_wire[i] = max(inside / hw.intra_bw, outside / hw.inter_bw if outside else 0.0)
            if c == "all_reduce":
                t_ring[i], ring_latency[i] = all_reduce_ring(g["message_bytes"], g["ranks"], hw.intra_bw, hw.intra_latency)
            continue
        t_bw[i] = nbytes[i] / hw.hbm_bw
        peak = getattr(hw, PEAK_FIELD[g["dtype"]]) if flops[i] else 1.0
        t_flop[i] = flops[i] / peak
    rows.cols.update(bytes=nbytes, flops=flops, t_bw=t_bw, t_flop=t_flop, t_wire=t_wire, t_ring=t_ring, ring_latency=ring_latency)
