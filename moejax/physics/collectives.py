"""α–β collective costs as serving stacks run them, and the fabric a group runs on.

``p`` ranks, ``n`` bytes per rank, ``alpha`` seconds of latency, ``beta`` bytes/s per GPU per
direction. Every collective is zero for ``p = 1``. Pure array expressions: vmappable and
differentiable.

A group of ``p`` ranks spread over ``span`` consecutive GPUs touches ``m = clip(span/island, 1, p)``
islands (NVLink/xGMI domains) with ``i = p/m`` of its ranks in each. Inside an island a GPU moves
``group_bw`` bytes/s to the rest of its group: all of ``intra_bw`` on a switched fabric
(NVSwitch), only the direct links it has on a full mesh (xGMI: ``(i-1)·link_bw``), and on a
torus (TPU ICI) the links of the sub-torus its ``i`` chips are placed on (``torus_shape``); each
kind is a module of ``fabrics`` (``switched``, ``mesh``, ``torus``) behind its selector. Between
islands each GPU has its own NIC, ``inter_bw``. ``Accounting.comm_efficiency`` scales every
bandwidth and ``Accounting.collective_latency`` adds a fixed launch cost to every collective call.
A collective thus picks its fabric from where its group is placed: within one island it never
pays an inter-node term; across islands it goes hierarchical.
"""

from __future__ import annotations

from .fabrics import all_to_all_inside, group_bw, inner_all_reduce, one_shot_or_inf
from .fabrics.switched import ring_terms
from .specs import Accounting, HardwareSpec
from .xp import namespace

__all__ = ["all_reduce", "all_to_all", "group_bw", "islands", "one_shot_all_reduce", "ring_all_reduce", "send"]


def ring_all_reduce(p, n, alpha, beta):
    """Ring all-reduce: ``2(p-1)α + 2(p-1)/p · n/β`` seconds.

    With p = 8, n = 1 MB, α = 2 µs, β = 450 GB/s: 28 µs + 3.889 µs = 31.889 µs.
    """
    xp = namespace(p, n, alpha, beta)
    fixed, per_byte = ring_terms(p, alpha, beta)
    return xp.where(p > 1, fixed + per_byte * n, 0.0)


def one_shot_all_reduce(p, n, alpha, beta):
    """One-shot all-reduce (NVLS, TensorRT-LLM/vLLM custom kernels): every GPU reads its ``p-1``
    peers' ``n`` bytes in one step and reduces locally: ``α + (p-1)·n/β`` seconds.

    p = 8, n = 16 KB (one token of Llama-3-70B in BF16), α = 2 µs, β = 450 GB/s:
    2 µs + 7·16384/450e9 = 2.255 µs (a ring takes 28.06 µs).
    """
    xp = namespace(p, n, alpha, beta)
    return xp.where(p > 1, alpha + (p - 1) / beta * n, 0.0)


def islands(hw: HardwareSpec, p, span):
    """(islands touched ``m``, ranks per island ``i``) of a group of ``p`` ranks over ``span`` GPUs.

    KVP over 8 ranks spaced 8 GPUs apart (span 64) on 8-GPU islands: m = 8, i = 1.
    """
    xp = namespace(hw, p, span)
    m = xp.minimum(xp.maximum(span / hw.island_size, 1.0), xp.maximum(p, 1.0))
    return m, p / m


def all_reduce(hw: HardwareSpec, p, span, n, acc: Accounting):
    """All-reduce of ``n`` bytes per rank over ``p`` ranks spread over ``span`` GPUs (seconds).

    Inside one island: the faster of ring and one-shot (NCCL picks by message size; small
    messages go one-shot/NVLS). Across ``m`` islands, hierarchically: a ring reduce-scatter and
    all-gather inside each island (intra α), and a ring all-reduce of ``n/i`` bytes per GPU
    between islands, each GPU on its own NIC — only those ``2(m-1)`` steps pay the inter-node α.

    TP16 over two 8-GPU H100 islands, 16 KB: 28.06 µs inside + 2·5 µs + 2048/50e9 s between = 38.11 µs
    (a flat ring at the inter-node α and bandwidth took 150 µs).
    """
    xp = namespace(hw, p, span, n)
    m, i = islands(hw, p, span)
    bw_in = group_bw(hw, i, acc)
    # Each algorithm costs fixed + per_byte·n with terms set by the group alone, so n (per batch
    # under vmap) is applied last. Ring and hierarchy are one formula: the ring between islands
    # costs nothing within one island (m = 1).
    ring = inner_all_reduce(hw, i, bw_in)  # a torus runs its per-dimension rings here
    outer = ring_terms(m, hw.inter_latency, hw.inter_bw * acc.comm_efficiency)  # carries n/i per GPU
    ring_or_hierarchy = (ring[0] + outer[0]) + (ring[1] + outer[1] / i) * n
    one_shot = hw.intra_latency + (i - 1) / bw_in * n  # within one island, where i = p > 1
    one_shot = one_shot_or_inf(hw, one_shot)  # no one-shot (NVLS) on a torus
    t = xp.where(m > 1, ring_or_hierarchy, xp.minimum(ring_or_hierarchy, one_shot))
    return xp.where(p > 1, t + acc.collective_latency, 0.0)


def all_to_all(hw: HardwareSpec, p, span, n, acc: Accounting, calls=1.0, remote=None):
    """Direct all-to-all (DeepEP, NCCL all-to-all): each of ``p`` ranks sends ``n/p`` bytes to
    every rank at once, ``n`` in all, over NVLink to its ``i-1`` island peers and over its NIC to
    the ``p-i`` others, both concurrently (seconds):
    ``α + (p-1)·a2a_peer_latency + max((i-1)/p·n / group_bw, (p-i)/p·n / inter_bw)``,
    with the inter-node α once the group leaves the island. ``calls`` exchanges moving ``n`` bytes
    between them (EP dispatch and combine: 2) pay the fixed costs ``calls`` times. ``remote``, if
    given, replaces the share ``(p-i)/p`` of ``n`` that crosses islands (an exchange that sends
    each remote island one copy, as DeepEP does, moves less over the NIC).

    EP64 on eight 8-GPU H800 islands (NVLink 200 GB/s, NIC 50 GB/s), 7 MB per GPU: the 56/64 that
    leave the island take 7e6·56/64/50e9 = 122.5 µs, the island's 7/64 take 3.8 µs; with α = 5 µs
    the dispatch is 127.5 µs — DeepEP's measured EP64 dispatch is the bandwidth term alone.

    On a torus the island's share is also bisection-limited: half of the ``i`` chips send
    ``i/2·n/p`` bytes each across the cut of the longest side ``a``, ``2·i/a`` links per direction
    (two cut planes, wrap-around), so ``i·a/(8·p)·n / link_bw`` when that exceeds the injection term.
    EP64 on a 4x4x4 v5p cube (100 GB/s links), 7 MB: injection 63/64·7e6/600e9 = 11.5 µs, bisection
    4·7e6/(8·100e9) = 35 µs: the cube's bisection sets the exchange.
    """
    xp = namespace(hw, p, span, n)
    m, i = islands(hw, p, span)
    alpha = xp.where(m > 1, hw.inter_latency, hw.intra_latency)
    fixed = calls * (alpha + (p - 1) * acc.a2a_peer_latency + acc.collective_latency)
    inside = (i - 1) / (p * group_bw(hw, i, acc))  # s per byte of n, like outside
    inside = all_to_all_inside(hw, i, p, inside, acc)  # a torus: at least its bisection (no cut for a lone chip)
    outside = ((p - i) / p if remote is None else remote) / (hw.inter_bw * acc.comm_efficiency)
    # max(inside·n, outside·n) = max(inside, outside)·n for n >= 0: n is applied once
    return xp.where(p > 1, fixed + xp.maximum(inside, outside) * n, 0.0)


def send(hw: HardwareSpec, span, n, acc: Accounting):
    """Point-to-point send of ``n`` bytes to a GPU ``span`` GPUs away (pipeline stages, the CP
    ring): ``α + n/β`` over one link of the island, or the NIC once ``span`` leaves it.

    16 KB between two 8-GPU H100 nodes: 5 µs + 16384/50e9 = 5.33 µs.
    """
    xp = namespace(hw, span, n)
    intra = span <= hw.island_size
    alpha = xp.where(intra, hw.intra_latency, hw.inter_latency)
    beta = xp.where(intra, group_bw(hw, 2.0, acc), hw.inter_bw * acc.comm_efficiency)
    return (alpha + acc.collective_latency) + n / beta
