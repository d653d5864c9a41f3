"""Per-layer attention patterns in catalogue entries: a ``layer_types`` list becomes layer counts.

An ``architecture:`` block may list one attention kind per decoder layer (``layer_types``, the
Hugging Face name) with each kind's size (``sliding_window``, ``chunk_size``, ``sparse_top_k`` with
``index_heads``/``index_head_dim``, the ``linear_*`` dimensions). The kernel needs only how many
layers of each kind there are (costs are per-layer sums), so the list is checked and counted here.
"""

from __future__ import annotations

from ..physics.specs import SpecError

#: layer type -> the ModelSpec count field (None: full attention, the remainder)
LAYER_TYPES = {
    "full_attention": None,
    "sliding_attention": "n_sliding_layers",
    "chunked_attention": "n_chunked_layers",
    "sparse_attention": "n_sparse_layers",
    "linear_attention": "n_linear_layers",
}
#: each kind's size fields: must be > 0 when given (a window of 0 tokens is no window)
SIZES = {"sliding_window": "sliding_attention", "chunk_size": "chunked_attention", "sparse_top_k": "sparse_attention"}
PATTERN_FIELDS = (
    "sliding_window",
    "chunk_size",
    "sparse_top_k",
    "index_heads",
    "index_head_dim",
    "linear_key_heads",
    "linear_key_dim",
    "linear_value_heads",
    "linear_value_dim",
    "linear_conv_kernel",
)


def _shown(types: list) -> str:
    return repr(types) if len(types) <= 6 else f"[{', '.join(map(repr, types[:3]))}, … {len(types)} entries]"


def pattern_counts(arch: dict, vals: dict, where: str) -> dict:
    """ModelSpec count fields from ``arch["layer_types"]`` (none: every layer full attention);
    one-line ``SpecError`` naming the field for a bad list or a size <= 0.

    >>> pattern_counts({"layer_types": ["sliding_attention", "full_attention"] * 2, "sliding_window": 128},
    ...                {"n_layers": 4.0, "sliding_window": 128.0}, "m")["n_sliding_layers"]
    2.0
    """
    for field in SIZES:
        if field in arch and vals[field] <= 0:
            raise SpecError(f"{where}: architecture.{field} = {arch[field]!r} is invalid: must be > 0 tokens")
    types = arch.get("layer_types")
    counts = dict.fromkeys((f for f in LAYER_TYPES.values() if f), 0.0)
    if types is None:
        return counts
    if not isinstance(types, list):
        raise SpecError(f"{where}: architecture.layer_types = {types!r} is invalid: must be a list of {', '.join(LAYER_TYPES)}")
    for i, t in enumerate(types):
        if t not in LAYER_TYPES:
            raise SpecError(f"{where}: architecture.layer_types[{i}] = {t!r} is invalid: allowed {', '.join(LAYER_TYPES)}")
    if len(types) != vals["n_layers"]:
        raise SpecError(
            f"{where}: architecture.layer_types = {_shown(types)} is invalid: must have one entry per "
            f"decoder layer (n_layers = {vals['n_layers']:g}), got {len(types)}"
        )
    for t in types:
        if LAYER_TYPES[t]:
            counts[LAYER_TYPES[t]] += 1.0
    for field, kind in SIZES.items():
        if kind in types and vals.get(field, 0.0) <= 0:
            raise SpecError(
                f"{where}: architecture.{field} = {arch.get(field, 0)!r} is invalid: must be > 0 tokens "
                f"(the pattern has {kind} layers)"
            )
    return counts
