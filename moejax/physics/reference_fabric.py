"""Plain-Python oracle of the fabric (docs/cost-model.md, section 4 "Collectives" and "Torus fabrics"),
for ``reference.py``: the collectives of one evaluation point, and the torus sub-slice placement.

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
        sides[k] *= 2.0**e
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


MESH = 1  # FABRICS["mesh"]
TORUS = 2  # FABRICS["torus"]


class Net:
    """The fabric of one evaluation point: islands, bandwidths (x comm_efficiency), latencies."""

    def __init__(self, hw: dict, ac: dict):
        self.island = hw["island_size"]
        self.intra_bw = hw["intra_bw"] * ac["comm_efficiency"]
        self.link_bw = hw["link_bw"] * ac["comm_efficiency"]
        self.mesh = hw["fabric"] == MESH
        self.torus = hw["fabric"] == TORUS
        self.dims = hw["torus_dims"]
        self.beta_e = hw["inter_bw"] * ac["comm_efficiency"]
        self.alpha_i = hw["intra_latency"]
        self.alpha_e = hw["inter_latency"]
        self.lam = ac["collective_latency"]
        self.peer = ac["a2a_peer_latency"]

    def islands(self, p: float, span: float) -> tuple[float, float]:
        """(m islands touched, i ranks per island) of a group of p ranks over span GPUs."""
        m = min(max(span / self.island, 1.0), p)
        return m, p / m

    def beta_g(self, i: float) -> float:
        """Per-direction bandwidth of a GPU inside an island, for a group of i ranks there."""
        if self.mesh:
            return min(self.intra_bw, max(i - 1, 1.0) * self.link_bw)
        if self.torus:
            return min(self.intra_bw, torus_links(i, self.dims) * self.link_bw)
        return self.intra_bw

    @staticmethod
    def ring(p, n, a, b):
        return 0.0 if p == 1 else 2 * (p - 1) * a + 2 * (p - 1) / p * n / b

    @staticmethod
    def oneshot(p, n, a, b):
        return 0.0 if p == 1 else a + (p - 1) * n / b

    def all_reduce(self, p: float, span: float, n: float) -> float:
        if p == 1:
            return 0.0
        m, i = self.islands(p, span)
        bg = self.beta_g(i)
        if self.torus:  # no one-shot; per-dimension rings inside, hierarchical across islands
            inner = 0.0 if i == 1 else torus_all_reduce(i, n, self.alpha_i, self.link_bw, self.intra_bw, self.dims)
            return inner + self.ring(m, n / i, self.alpha_e, self.beta_e) + self.lam
        if m == 1:
            return min(self.ring(i, n, self.alpha_i, bg), self.oneshot(i, n, self.alpha_i, bg)) + self.lam
        return self.ring(i, n, self.alpha_i, bg) + self.ring(m, n / i, self.alpha_e, self.beta_e) + self.lam

    def all_to_all(self, p: float, span: float, n: float, remote: float | None = None) -> float:
        # AMBIGUOUS: A2A is not written in terms of the primitives, whose "zero when p = 1" is then
        # read to cover it too: a 1-rank all-to-all costs nothing (no alpha, no lambda).
        if p == 1:
            return 0.0
        m, i = self.islands(p, span)
        a = self.alpha_e if m > 1 else self.alpha_i
        out = (p - i) / p if remote is None else remote  # share of n crossing islands
        inside = 0.0 if i == 1 else (i - 1) / p * n / self.beta_g(i)
        if self.torus and i > 1:
            inside = max(inside, torus_bisection_time(i, p, n, self.link_bw, self.dims))
        wire = max(inside, out * n / self.beta_e)
        return a + (p - 1) * self.peer + wire + self.lam

    def send(self, span: float, n: float) -> float:
        if span <= self.island:
            return self.alpha_i + n / self.beta_g(2.0) + self.lam
        return self.alpha_e + n / self.beta_e + self.lam
