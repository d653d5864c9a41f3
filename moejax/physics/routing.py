"""Expert routing: how many experts a step's tokens touch, the busiest EP rank's load, and the
shares of a token's expert copies that an EP group's all-reduce or the inter-island network carry.

Uniform top-k routing over an effective pool (``Accounting.routing_skew`` shrinks it); pure array
expressions on one point, as ``cost.py`` (docs/cost-model.md, "MoE layer").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import arch
from .collectives import islands
from .specs import Accounting, HardwareSpec, ModelSpec, Partition
from .xp import namespace


class ExpertLoad(NamedTuple):
    """Per GPU per MoE layer, for one microbatch (``expert_load``): expert parameters read,
    expert FLOPs/2 (parameter-token products) and token copies dispatched."""

    params_read: Any
    half_flops: Any
    copies: Any


def expert_slots_per_rank(m: ModelSpec, p: Partition):
    """Expert slots one EP rank holds: ``(n_experts + redundant_experts)/ep``.
    DeepSeek-V3 on EP72 with 32 redundant experts: 288/72 = 4."""
    return (m.n_experts + p.redundant_experts) / p.ep


def _safe_pow_complement(base, tokens, active):
    """``1 - base**tokens`` where ``active``, else 1 (a safe power: no 0**x in the gradient)."""
    xp = namespace(base, tokens)
    # exp(tokens·ln base), not base**tokens: the log depends on the specs alone, so under vmap it is
    # taken once per spec rather than per batch, and an exp costs about half a pow on the CPU
    return xp.where(active, 1 - xp.exp(tokens * xp.log(xp.where(active, base, 0.5))), 1.0)


def touched_experts(m: ModelSpec, tokens, skew):
    """Expected distinct experts touched by ``tokens`` tokens choosing top-k of E uniformly,
    over an effective pool ``E' = max(E(1-skew), k)``: ``E'(1 - (1 - k/E')^tokens)``.

    Smooth in ``tokens``; exactly k at one token and → E' for many. DeepSeek-V3 (256, 8) at 8 tokens:
    256·(1 - (31/32)^8) = 57.42 experts (vs 64 if no two tokens shared an expert).
    """
    xp = namespace(m, tokens, skew)
    e_eff = xp.maximum(m.n_experts * (1 - skew), m.top_k)
    sparse = e_eff > m.top_k
    return xp.where(sparse, e_eff, m.top_k) * _safe_pow_complement(
        1 - m.top_k / xp.where(sparse, e_eff, 2 * m.top_k), tokens, sparse
    )


def busiest_rank(m: ModelSpec, p: Partition, tokens, skew):
    """(touched expert slots, token copies) on the busiest EP rank: the expected maximum over
    ranks, which sets the step (the mean understates it).

    Routing uniform over a hot pool of ``P = max((E+R)(1-skew), k)`` slots placed on
    ``n = clip(ep(1-skew) + R/slots_per_rank, 1, ep)`` ranks (skew concentrates load; each
    redundant slot spreads it again). Per hot rank: ``h = min(slots_per_rank, P/n)`` hot slots,
    each touched with ``π = 1 - (1 - k/P)^tokens``; copies ``tokens·k/n`` on average. The maximum
    over ``n`` ranks is taken as mean + ``sqrt(2 ln n)`` standard deviations (binomial variances
    ``h·π(1-π)`` and ``tokens·(k/n)(1-1/n)``), capped at ``h`` slots and ``tokens·min(k, slots)``
    copies. At ep = 1 this is ``touched_experts`` and ``tokens·k`` exactly.

    Mixtral-8x22B on EP8, one token (k = 2): π = 1/4 per expert, mean 0.25 touched per rank, the
    bound 0.25 + sqrt(2 ln 8)·0.433 = 1.13 → capped at 1: the busiest GPU reads a whole expert
    (the mean, 0.25, would charge a quarter of one).
    """
    xp = namespace(m, p, tokens, skew)
    spr = expert_slots_per_rank(m, p)
    slots = m.n_experts + p.redundant_experts
    pool = xp.maximum(slots * (1 - skew), m.top_k)
    n = xp.clip(p.ep * (1 - skew) + p.redundant_experts / spr, 1.0, p.ep)
    hot = xp.minimum(spr, pool / n)
    sparse = pool > m.top_k
    pi = _safe_pow_complement(1 - m.top_k / xp.where(sparse, pool, 2 * m.top_k), tokens, sparse)
    root = lambda x: xp.sqrt(xp.maximum(x, 1e-30))  # noqa: E731  (finite gradients where x = 0)
    z = root(2 * xp.log(n))
    touched = xp.minimum(hot, hot * pi + z * root(hot * pi * (1 - pi)))
    mean_copies = tokens * m.top_k / n
    copies = xp.minimum(mean_copies + z * root(mean_copies * (1 - 1 / n)), tokens * xp.minimum(m.top_k, spr))
    return touched, copies


def group_share(m: ModelSpec, p: Partition):
    """Share of tokens with at least one of their k experts in a given EP group, ``1 - (1-1/ep)^k``
    (uniform routing): the outputs of a token's experts within a group are summed locally, so the
    group's tensor-parallel all-reduce carries only these tokens. 1 at ep = 1; DeepSeek-V3 (k = 8)
    on ep = 8: 1 - (7/8)^8 = 0.656."""
    xp = namespace(m, p)
    split = p.ep > 1
    return _safe_pow_complement(1 - 1 / xp.where(split, p.ep, 2.0), m.top_k, split)


def remote_share(m: ModelSpec, hw: HardwareSpec, p: Partition):
    """Share of a token's k expert copies that cross islands when EP dispatch sends each remote
    island one copy (forwarded inside it over NVLink, as DeepEP's internode kernels do): the
    expected distinct islands a token touches, ``M(1 - (1 - 1/M)^k)`` for ``M`` islands, of which
    ``(M-1)/M`` are remote, per copy. DeepSeek-V3 (k = 8) on EP32 over four 8-GPU islands:
    4·(1 - 0.75^8)·3/4 / 8 = 0.337 (the naive share is 24/32 = 0.75)."""
    xp = namespace(m, hw, p)
    isl, _ = islands(hw, p.ep, p.gpus_per_stage)
    many = isl > 1
    touched = isl * _safe_pow_complement(1 - 1 / xp.where(many, isl, 2.0), m.top_k, many)
    return xp.where(many, touched * (isl - 1) / isl / m.top_k, 0.0)


def expert_load(m: ModelSpec, p: Partition, tokens, acc: Accounting) -> ExpertLoad:
    """Expert parameters read, expert FLOPs/2 and token copies dispatched (``ExpertLoad``) per GPU
    per MoE layer for ``tokens`` tokens.

    physical: the busiest EP rank's touched slots and token copies over its ``G/ep`` GPUs. The qs
    paper's eq. 4 (``W/R`` per token, ``R = tokens·k/E``), averaged over the stage's G GPUs:
    paper-active reads the whole pool once per step (W = active weights, its eq. 17), paper-pool
    E/k pools per step (W = the pool, what its Table 5 needs).
    """
    g = p.gpus_per_stage
    tp_ffn = g / p.ep
    per_expert = arch.expert_params(m)
    if acc.expert_traffic == "physical":
        touched, copies = busiest_rank(m, p, tokens, acc.routing_skew)
        return ExpertLoad(touched * per_expert / tp_ffn, copies * per_expert / tp_ffn, copies / tp_ffn)
    mean_copies = m.top_k * tokens / g
    pools = 1.0 if acc.expert_traffic == "paper-active" else m.n_experts / m.top_k
    return ExpertLoad(pools * m.n_experts * per_expert / g, mean_copies * per_expert, mean_copies)
