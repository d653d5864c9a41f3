"""Plain-Python oracle for per-layer attention patterns (docs/cost-model.md, "Layer patterns").

Part of the test oracle ``moejax.physics.reference``, kept apart for size; like it, this module is
written from the doc, imports nothing but the standard library, and works on plain dicts (a model
dict from ``reference._model``). It spells the pattern out layer by layer (a Python list of kinds)
and evaluates each layer on its own; the kernel works on per-kind counts.
"""

from __future__ import annotations

# ModelSpec's pattern fields and their defaults (copied from moejax/physics/specs.py).
PATTERN_DEFAULTS = {
    "n_sliding_layers": 0.0,
    "sliding_window": 0.0,
    "n_chunked_layers": 0.0,
    "chunk_size": 0.0,
    "n_sparse_layers": 0.0,
    "sparse_top_k": 0.0,
    "index_heads": 0.0,
    "index_head_dim": 0.0,
    "n_linear_layers": 0.0,
    "linear_key_heads": 0.0,
    "linear_key_dim": 0.0,
    "linear_value_heads": 0.0,
    "linear_value_dim": 0.0,
    "linear_conv_kernel": 0.0,
}
KINDS = ("full", "sliding", "chunked", "sparse", "linear")


def layers(m: dict) -> list[str]:
    """The decoder layers' attention kinds, one entry per layer (order is immaterial to the costs)."""
    counts = {
        "sliding": m["n_sliding_layers"],
        "chunked": m["n_chunked_layers"],
        "sparse": m["n_sparse_layers"],
        "linear": m["n_linear_layers"],
    }
    full = m["n_layers"] - sum(counts.values())
    out = ["full"] * round(full)
    for kind, n in counts.items():
        out += [kind] * round(n)
    return out


def _conv_channels(m: dict) -> float:
    return 2 * m["linear_key_heads"] * m["linear_key_dim"] + m["linear_value_heads"] * m["linear_value_dim"]


def layer_params(m: dict, kind: str, p_attn: float) -> float:
    """Attention parameters of one decoder layer of ``kind``; ``p_attn`` is the model's attention
    (self + cross) of a full layer."""
    d = m["d_model"]
    if kind == "linear":
        nk, dk, nv, dv = m["linear_key_heads"], m["linear_key_dim"], m["linear_value_heads"], m["linear_value_dim"]
        qkvz = d * (2 * nk * dk + 2 * nv * dv)
        return qkvz + 2 * d * nv + _conv_channels(m) * m["linear_conv_kernel"] + nv * dv * d
    if kind == "sparse":
        q_in = m["q_lora_rank"] if m["q_lora_rank"] > 0 else d
        hi, di = m["index_heads"], m["index_head_dim"]
        return p_attn + q_in * hi * di + d * di + d * hi
    return p_attn


def _state_values(m: dict) -> float:
    """Fixed state of one sequence in one linear layer (values)."""
    return m["linear_value_heads"] * m["linear_key_dim"] * m["linear_value_dim"] + _conv_channels(m) * max(
        m["linear_conv_kernel"] - 1, 0.0
    )


def _state_gpu(m: dict, tp: float) -> float:
    """A linear layer's state on one GPU: value heads split over tp (whole heads beyond that)."""
    heads = m["linear_value_heads"]
    share = 1.0 / tp if tp <= heads else 1.0 / heads  # at least one head per GPU
    return _state_values(m) * share


def stored_tokens(m: dict, kind: str, L: float) -> float:
    """Tokens of one sequence a softmax layer of ``kind`` keeps at context ``L``."""
    if kind == "sliding":
        return min(L, m["sliding_window"])
    if kind == "chunked":
        return min(L, m["chunk_size"])  # the current chunk only
    return L  # full, sparse


def read_tokens(m: dict, kind: str, L: float) -> float:
    """Tokens a decode step reads per sequence in a softmax layer of ``kind`` (the sparse indexer's
    keys apart)."""
    if kind == "chunked":
        # position p reads p mod C tokens: L in the first chunk, then C/2 on average over a batch
        return L if L <= m["chunk_size"] else m["chunk_size"] / 2
    if kind == "sparse":
        return min(L, m["sparse_top_k"])
    return stored_tokens(m, kind, L)


def stored_values_gpu(m: dict, kind: str, L: float, tp: float, kvp: float, kv_gpu: float) -> float:
    """Cache values one sequence holds on one GPU in one layer of ``kind``; ``kv_gpu`` are the
    values per token per GPU of a full layer."""
    if kind == "linear":
        return _state_gpu(m, tp)  # not split along the sequence: whole on each kvp rank
    per_token = kv_gpu + (m["index_head_dim"] if kind == "sparse" else 0.0)
    return stored_tokens(m, kind, L) / kvp * per_token


def layer_cost(m: dict, kind: str, c: dict) -> tuple[float, float, float, float]:
    """(compute s, HBM bytes, communication s, never-hidden s) of one layer of ``kind`` for one
    microbatch on one GPU. ``c`` carries the step's quantities: ``T_a`` query tokens of an attention
    group, ``b_a`` its sequences, ``L``, ``prefill``, ``tp``, ``kvp``, peaks ``F_w``/``F_q``, ``wb``, ``kvb``
    (KV bytes per value, kv_scale included, over attention_bw_efficiency: every cache and state byte here is
    streamed by an attention kernel), ``kv_gpu``, ``p_attn``, ``f_score`` (score FLOPs per key,
    absorbed MLA in decode), the full layer's ``comm``/``tail`` and the tp all-reduce ``ar``."""
    tp, kvp, L, T_a, b_a = c["tp"], c["kvp"], c["L"], c["T_a"], c["b_a"]
    params = layer_params(m, kind, c["p_attn"])
    weights = c["wb"] * params / tp
    gemm = 2 * params * T_a / tp / c["F_w"]
    if kind == "linear":
        flops = 6 * m["linear_value_heads"] * m["linear_key_dim"] * m["linear_value_dim"]  # S·k, update, S·q
        state = b_a * _state_gpu(m, tp) * c["kvb"]
        moved = state if c["prefill"] else 2 * state  # decode reads and writes the state
        return gemm + flops * T_a / tp / c["F_q"], weights + moved, c["ar"], 0.0
    if c["prefill"]:
        half = L / 2
        keys = {
            "full": half,
            "sliding": min(half, m["sliding_window"]),
            "chunked": min(half, m["chunk_size"] / 2),
            "sparse": min(half, m["sparse_top_k"]),
        }[kind]
        kv_tokens = T_a / kvp  # each prompt token written once
        index_keys, index_tokens = half, T_a / kvp
    else:
        keys = read_tokens(m, kind, L)
        kv_tokens = b_a * keys / kvp
        index_keys, index_tokens = L, b_a * L / kvp
    score = c["f_score"] * keys
    hbm = weights + kv_tokens * c["kv_gpu"] * c["kvb"]
    if kind == "sparse":  # the lightning indexer scores every key with its own small key cache
        score += 2 * m["index_heads"] * m["index_head_dim"] * index_keys
        hbm += index_tokens * m["index_head_dim"] * c["kvb"]
    return gemm + score * T_a / (tp * kvp) / c["F_q"], hbm, c["comm"], c["tail"]
