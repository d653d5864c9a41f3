"""Switched island (``HardwareSpec.fabric`` 0, NVSwitch): every GPU reaches each member of its group
at its whole ``intra_bw``, and an all-reduce inside the island is a ring (or one-shot, chosen in
``collectives.all_reduce``). The ring's terms are also the ring between islands (each GPU on its
own NIC, a switched network).
"""

from __future__ import annotations

from ..specs import HardwareSpec


def ring_terms(p, alpha, beta):
    """A ring all-reduce as (fixed s, s per byte): ``2(p-1)α`` and ``2(p-1)/(p·β)``; both 0 at p = 1."""
    return 2 * (p - 1) * alpha, 2 * (p - 1) / (p * beta)


def group_bw(hw: HardwareSpec, i):
    """Bytes/s (per direction) one GPU moves to the rest of its group of ``i``: all of ``intra_bw``."""
    return hw.intra_bw


def inner_all_reduce(hw: HardwareSpec, i, bw_in):
    """(fixed s, s per byte) of the all-reduce among the ``i`` ranks of one island: a ring at the
    intra-island α and the group's bandwidth ``bw_in``."""
    return ring_terms(i, hw.intra_latency, bw_in)
