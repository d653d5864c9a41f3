"""The fabric inside an island, one module per kind behind one selector: ``switched`` (NVSwitch),
``mesh`` (xGMI full mesh) and ``torus`` (TPU ICI), by ``HardwareSpec.fabric`` (``specs.FABRICS``).

Under ``vmap`` the fabric code is an array (a design-space sweep mixes fabrics), so each selector
evaluates the kinds' formulas and picks per point with ``where``; a kind that shares another's
formula (the mesh runs the switched island's ring) is not evaluated twice.
"""

from __future__ import annotations

from ..specs import FABRICS, Accounting, HardwareSpec
from ..xp import namespace
from . import mesh, switched, torus

MESH = float(FABRICS["mesh"])  # HardwareSpec.fabric code of a full-mesh island (0: switched)
TORUS = float(FABRICS["torus"])  # HardwareSpec.fabric code of a torus island (TPU ICI)


def group_bw(hw: HardwareSpec, i, acc: Accounting):
    """Bytes/s (per direction) one GPU moves to the other ``i-1`` members of its group inside one
    island: ``intra_bw`` on a switched fabric; ``min(intra_bw, (i-1)·link_bw)`` on a full mesh,
    where a group gets only the direct links it has; ``min(intra_bw, links·link_bw)`` on a torus,
    with the links of its sub-torus (``torus.torus_links``: two per dimension it spans).

    MI300X (7 xGMI links, ``link_bw`` 45.6 GB/s usable): a pair gets 45.6 GB/s, all eight 319.2 GB/s.
    TPU v5p (3D torus, 100 GB/s per link): 8 chips on 2x2x2 use 6 links, 600 GB/s; a pair 200 GB/s.
    """
    xp = namespace(hw, i)
    bw = xp.where(
        hw.fabric == MESH, mesh.group_bw(hw, i), xp.where(hw.fabric == TORUS, torus.group_bw(hw, i), switched.group_bw(hw, i))
    )
    return bw * acc.comm_efficiency


def inner_all_reduce(hw: HardwareSpec, i, bw_in):
    """(fixed s, s per byte) of the all-reduce among the ``i`` ranks of one island: a ring
    (``switched.ring_terms``) on a switched or mesh fabric; on a torus, ring reduce-scatter and
    all-gather along each dimension of the group's sub-torus, all dimensions at once on shards of the
    data, so every link is busy: ``2·hops·α`` and ``2(i-1)/i / (links·link_bw)`` (the bandwidth optimum
    for a chip with that many links; ``torus.inner_all_reduce``).

    TPU v5p, 64 chips on 4x4x4 (6 links of 100 GB/s, α = 1 µs), 1 MB: 18 µs + 2·63/64·1e6/600e9 s
    = 21.281 µs (a ring over 64 chips on one link pair would take 126 µs + 9.84 µs).
    """
    xp = namespace(hw, i, bw_in)
    ring = switched.inner_all_reduce(hw, i, bw_in)  # also the mesh's (mesh.inner_all_reduce)
    on_torus = hw.fabric == TORUS
    ring_torus = torus.inner_all_reduce(hw, i, bw_in)
    return xp.where(on_torus, ring_torus[0], ring[0]), xp.where(on_torus, ring_torus[1], ring[1])


def one_shot_or_inf(hw: HardwareSpec, t):
    """A one-shot all-reduce's time ``t`` where the island runs one (switched: NVLS; mesh: direct
    reads of every peer), ``inf`` on a torus, which has none."""
    xp = namespace(hw, t)
    return xp.where(hw.fabric == TORUS, xp.inf, t)


def all_to_all_inside(hw: HardwareSpec, i, p, inside, acc: Accounting):
    """Seconds per byte of an all-to-all's island share: ``inside`` (injection at ``group_bw``) on a
    switched or mesh fabric; on a torus at least the bisection term (``torus.bisection_per_byte``)."""
    xp = namespace(hw, i, p, inside)
    return xp.where(hw.fabric == TORUS, xp.maximum(inside, torus.bisection_per_byte(hw, i, p, acc)), inside)
