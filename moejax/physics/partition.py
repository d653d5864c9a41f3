"""Which partitions fit a model: divisibility rules, as a mask (in jit) or an error (at the edge).

Rules: tp divides the query heads and either divides or is a multiple of the KV heads (GQA heads
are split up to n_kv and replicated beyond); ep divides the expert slots (routed experts plus
redundant copies, which need an MoE); at most one layer per pipeline stage (uneven stages are
allowed); dense_tp divides the stage; kvp > 1 only with a KV-parallel mode (``Partition`` checks
that and ep dividing the stage itself).
"""

from __future__ import annotations

import numpy as np

from . import arch
from .specs import ModelSpec, Partition, SpecError
from .xp import namespace


def _divides(a, b):
    xp = namespace(a, b)
    return xp.mod(b, a) == 0


def partition_valid(m: ModelSpec, p: Partition):
    """Boolean mask: ``p`` is a legal way to split ``m`` (pure array expression, vmappable)."""
    xp = namespace(m, p)
    kv_ok = xp.where(p.tp <= m.n_kv_heads, _divides(p.tp, m.n_kv_heads), _divides(m.n_kv_heads, p.tp))
    kv_ok = kv_ok | arch.is_mla(m)  # the MLA latent is replicated, any tp that splits heads works
    slots = m.n_experts + p.redundant_experts
    redundant_ok = (p.redundant_experts == 0) | (m.n_experts > 1)
    dense_ok = (p.dense_tp == 0) | _divides(xp.maximum(p.dense_tp, 1.0), p.gpus_per_stage)
    return (
        _divides(p.tp, m.n_heads)
        & kv_ok
        & _divides(p.ep, slots)
        & redundant_ok
        & (p.pp <= m.n_layers)
        & _divides(p.ep, p.gpus_per_stage)
        & dense_ok
        & ((p.kv_mode > 0) | (p.kvp == 1))
    )


def check_partition(m: ModelSpec, p: Partition) -> None:
    """Raise one-line ``SpecError`` naming the first rule ``p`` breaks for ``m`` (host values)."""
    tp, ep, pp, spare = float(p.tp), float(p.ep), float(p.pp), float(p.redundant_experts)
    heads, kv, experts, layers = float(m.n_heads), float(m.n_kv_heads), float(m.n_experts), float(m.n_layers)
    mla = bool(np.asarray(arch.is_mla(m)))
    if heads % tp:
        raise SpecError(f"Partition.tp = {tp:g} is invalid: must divide n_heads = {heads:g}")
    if not mla and ((tp <= kv and kv % tp) or (tp > kv and tp % kv)):
        raise SpecError(f"Partition.tp = {tp:g} is invalid: must divide n_kv_heads = {kv:g} or be a multiple of it")
    if spare and experts == 1:
        raise SpecError(f"Partition.redundant_experts = {spare:g} is invalid: a dense model has no experts to replicate")
    if (experts + spare) % ep:
        raise SpecError(
            f"Partition.ep = {ep:g} is invalid: must divide the expert slots n_experts + redundant_experts = {experts + spare:g}"
        )
    if pp > layers:
        raise SpecError(f"Partition.pp = {pp:g} is invalid: at most n_layers = {layers:g} stages")
