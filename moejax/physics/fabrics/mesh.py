"""Full-mesh island (``HardwareSpec.fabric`` 1, AMD xGMI): each GPU has a direct link of ``link_bw``
to every other, so a group gets only the links it has; its all-reduce is the switched island's ring
(``switched.inner_all_reduce``).
"""

from __future__ import annotations

from ..specs import HardwareSpec
from ..xp import namespace
from .switched import inner_all_reduce

__all__ = ["group_bw", "inner_all_reduce"]


def group_bw(hw: HardwareSpec, i):
    """Bytes/s (per direction) one GPU moves to the other ``i-1`` members of its group:
    ``min(intra_bw, (i-1)·link_bw)``, the direct links it has.

    MI300X (7 xGMI links, ``link_bw`` 45.6 GB/s usable): a pair gets 45.6 GB/s, all eight 319.2 GB/s.
    """
    xp = namespace(hw, i)
    return xp.minimum(hw.intra_bw, xp.maximum(i - 1, 1.0) * hw.link_bw)
