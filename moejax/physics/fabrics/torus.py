"""Torus island (``HardwareSpec.fabric`` 2, TPU ICI): a group of ``i`` chips is placed on a sub-torus
(``torus_shape``) and uses only that sub-torus's links (``torus_links``): its bandwidth, its
all-reduce (per-dimension rings on every dimension at once; no one-shot) and, for an all-to-all,
the bisection of its longest side.
"""

from __future__ import annotations

from ..specs import MAX_TORUS_DIMS, Accounting, HardwareSpec
from ..xp import namespace


def torus_shape(hw: HardwareSpec, i):
    """Log2 of the sides ``(e_0, e_1, e_2)`` (``e_0`` the longest) of the sub-torus a group of ``i``
    chips is placed on: the most cubic shape of ``i`` chips on ``torus_dims`` dimensions. With
    ``e = log2 i``, ``q = floor(e/D)`` and ``r = e - D·q``, side ``j < D`` is ``2^(q + clip(r-j, 0, 1))``
    and sides beyond ``D`` are 1. A power of two gets the slice shapes TPUs use (8 chips on a 3D
    torus: 2x2x2; 32: 4x4x2; 64 on a 2D torus: 8x8); any other ``i`` gets one fractional side
    (72 on 3D: 4.5x4x4), which keeps every cost continuous in ``i``. Assumed: the group's mesh axes
    map onto torus axes (as ``jax.experimental.mesh_utils`` lays them out) and each of its axes
    has its wrap-around link.

    >>> hw = HardwareSpec(1, 1, 1, 1, 1, 0, 64, 1, 0, fabric=2, link_bw=1, torus_dims=3)
    >>> [round(float(2 ** e), 3) for e in torus_shape(hw, 32.0)]
    [4.0, 4.0, 2.0]
    """
    xp = namespace(hw, i)
    d = xp.maximum(hw.torus_dims, 1.0)
    e = xp.log2(xp.maximum(i, 1.0))
    e = xp.where(xp.abs(e - xp.round(e)) < 1e-4, xp.round(e), e)  # exact powers of two in float32
    q = xp.floor(e / d)
    r = e - d * q
    return tuple(xp.where(j < d, q + xp.clip(r - j, 0.0, 1.0), 0.0) for j in range(MAX_TORUS_DIMS))


def torus_links(hw: HardwareSpec, i):
    """(links a chip uses, ring hops per reduce-scatter, longest side) of a group of ``i`` chips
    on its sub-torus: each dimension of side ``2^e`` gives ``2·min(e, 1)`` links (both ways round
    its ring; a fractional side a fraction of them) and ``2^e - 1`` hops."""
    xp = namespace(hw, i)
    e = torus_shape(hw, i)
    links = 2.0 * sum(xp.clip(ej, 0.0, 1.0) for ej in e)
    hops = sum(2.0**ej - 1.0 for ej in e)
    return xp.maximum(links, 1e-9), hops, 2.0 ** e[0]


def group_bw(hw: HardwareSpec, i):
    """Bytes/s (per direction) one chip moves to the other ``i-1`` members of its group:
    ``min(intra_bw, links·link_bw)``, with the links of its sub-torus (``torus_links``: two per
    dimension it spans).

    TPU v5p (3D torus, 100 GB/s per link): 8 chips on 2x2x2 use 6 links, 600 GB/s; a pair 200 GB/s.
    """
    xp = namespace(hw, i)
    return xp.minimum(hw.intra_bw, torus_links(hw, i)[0] * hw.link_bw)


def inner_all_reduce(hw: HardwareSpec, i, bw_in):
    """(fixed s, s per byte) of the all-reduce among the ``i`` chips of one island: ring
    reduce-scatter and all-gather along each dimension of the group's sub-torus, all dimensions at
    once on shards of the data, so every link is busy: ``2·hops·α`` and ``2(i-1)/i / (links·link_bw)``
    (the bandwidth optimum for a chip with that many links; ``bw_in`` is that bandwidth).

    TPU v5p, 64 chips on 4x4x4 (6 links of 100 GB/s, α = 1 µs), 1 MB: 18 µs + 2·63/64·1e6/600e9 s
    = 21.281 µs (a ring over 64 chips on one link pair would take 126 µs + 9.84 µs).
    """
    hops = torus_links(hw, i)[1]
    return 2.0 * hops * hw.intra_latency, 2 * (i - 1) / (i * bw_in)


def bisection_per_byte(hw: HardwareSpec, i, p, acc: Accounting):
    """Seconds per byte of ``n`` (an all-to-all's bytes per rank over ``p`` ranks) that the island's
    share takes across the bisection: half of the ``i`` chips send ``i/2·n/p`` bytes each across the
    cut of the longest side ``a``, ``2·i/a`` links per direction (two cut planes, wrap-around), so
    ``i·a/(8·p) / link_bw``; none for a lone chip (interpolated between 1 and 2 chips).

    EP64 on a 4x4x4 v5p cube (100 GB/s links), 7 MB: 4·7e6/(8·100e9) = 35 µs.
    """
    xp = namespace(hw, i, p)
    return xp.clip(i - 1, 0.0, 1.0) * i * torus_links(hw, i)[2] / (8 * p * xp.maximum(hw.link_bw, 1e-9) * acc.comm_efficiency)
