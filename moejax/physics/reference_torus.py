"""Plain-Python oracle of the torus fabric (docs/cost-model.md, "Torus fabrics"), for ``reference.py``.

Written from the doc, independently of ``collectives.py``: the group's sub-torus is built by
doubling its shortest side, not by the kernel's closed form. Imports nothing but ``math``.
"""

from __future__ import annotations

import math


def torus_sides(i: float, dims: float) -> list[float]:
    """Sides of the sub-torus of i chips on dims dimensions, built by doubling the shortest side
    (the first of equals) while a factor 2 is left, then stretching the shortest by what remains."""
    sides = [1.0] * int(dims)
    e = math.log2(i)
    if abs(e - round(e)) < 1e-9:
        e = float(round(e))
    while e >= 1.0:
        k = sides.index(min(sides))
        sides[k] *= 2.0
        e -= 1.0
    if e > 0.0:
        k = sides.index(min(sides))
        sides[k] *= 2.0 ** e
    return sorted(sides, reverse=True)


def torus_links(i: float, dims: float) -> float:
    """Links one chip uses: a side of 2 or more gives both ring directions, a side 2**f < 2 gives 2f."""
    return sum(2.0 * min(math.log2(a), 1.0) for a in torus_sides(i, dims))


def torus_all_reduce(i: float, n: float, alpha: float, link_bw: float, cap: float, dims: float) -> float:
    """Per-dimension ring reduce-scatter + all-gather on every dimension at once (shards of the data)."""
    hops = sum(a - 1.0 for a in torus_sides(i, dims))
    bw = min(cap, torus_links(i, dims) * link_bw)
    return 2.0 * hops * alpha + 2.0 * (i - 1.0) / i * n / bw


def torus_bisection_time(i: float, p: float, n: float, link_bw: float, dims: float) -> float:
    """All-to-all share inside the island over the bisection: (i/2 chips)·(i/2·n/p bytes) per direction
    through 2·i/a links, a the longest side; between 1 and 2 chips scaled by i - 1 (none for one chip)."""
    a = torus_sides(i, dims)[0]
    return min(i - 1.0, 1.0) * (i / 2.0) * (i / 2.0 * n / p) / (2.0 * i / a * link_bw)
