"""The kernel's phases as named records, and how they add up into one step on the largest stage.

A decode or prefill step (``cost.py``) is costed per phase, one kind of layer (attention, dense FFN,
MoE, LM head, and with layer patterns the sliding, chunked, sparse and linear layers), for one
microbatch on one GPU of the largest pipeline stage (``Phase``); ``stage_costs`` sums the phases into
the step's totals (docs/cost-model.md: the local roofline), ``phase_times`` gives each phase's part
of them. ``cost.decode_phases`` returns a decode step's phases (``DecodePhases``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .specs import Accounting
from .xp import namespace, static_equals


class Phase(NamedTuple):
    """One phase's per-layer cost on one GPU of the largest stage, for one microbatch (``cost.microbatch_phases``).

    ``compute``, ``hbm`` and ``comm`` in s (``cost._pattern_phases`` gives ``hbm`` in bytes, before the HBM
    bandwidth); ``pinned`` the part of ``comm`` that never hides (the CP ring tail), s; ``layers``
    how many such layers a stage runs per microbatch (scaled by ``stage_scale/pp``; the LM head ``1/pp``);
    ``fixed`` the kernels' fixed costs of one such layer, s (``kernels.layer_fixed_costs``: Σ count·τ,
    outside the roofline and the overlap window; 0 when every ``Accounting.tau_*`` is 0).
    """

    compute: Any
    hbm: Any
    comm: Any
    pinned: Any
    layers: Any
    fixed: Any = 0.0


class MicrobatchCosts(NamedTuple):
    """One microbatch on the largest stage: its ``Phase`` by name (attention, dense, moe, head, and
    with layer patterns sliding, chunked, sparse, linear) and the pipeline send to the next stage (s)."""

    phases: dict[str, Phase]
    pipe: Any


class StageCosts(NamedTuple):
    """One step on the largest stage (``stage_costs``), pipeline sends not included, in s: the
    roofline (per-phase ``max(compute, HBM)`` summed, or the global max), compute, HBM, communication,
    the exposed communication, and the kernels' fixed costs (``Phase.fixed`` summed)."""

    roofline: Any
    compute: Any
    hbm: Any
    comm: Any
    exposed: Any
    fixed: Any = 0.0


class DecodePhases(NamedTuple):
    """One decode step split by phase (``cost.decode_phases``): ``phases`` and ``pipe`` of one microbatch
    (``MicrobatchCosts``); the batch (sequences per replica: ``wl.batch``, else B_max), ``b_eval =
    max(batch, 1)`` the components are evaluated at, ``b_max`` and the per-group headroom
    (``batch_capacity``); ``tokens`` per microbatch through the FFN (chunk tokens included) and
    ``tokens_per_seq``, each sequence's tokens per step that reuse the weights."""

    phases: dict[str, Phase]
    pipe: Any
    batch: Any
    b_eval: Any
    b_max: Any
    per_group: Any
    tokens: Any
    tokens_per_seq: Any


def stage_costs(phases: dict[str, Phase], pp, acc: Accounting) -> StageCosts:
    """(roofline s, compute s, HBM s, communication s, exposed s, kernel fixed costs s) of one step on the
    largest stage: its ``pp`` microbatches (``pp`` × one microbatch's), pipeline sends not included. Each
    phase's communication hides behind ``overlap`` × its window, ``max(compute, HBM)``, except its pinned
    part (the CP ring tail), which never hides."""
    xp = namespace(phases, pp)
    roof = t_c = t_h = comm = exposed = fixed = 0.0
    for c, h, k, pinned, count, tau in phases.values():  # Phase fields
        count = pp * count  # per step (pp·count layers): totals as sums of products, stored once (cost._assemble)
        window = xp.maximum(c, h)
        roof, t_c, t_h = roof + count * window, t_c + count * c, t_h + count * h
        if not (isinstance(k, float) and k == 0.0):  # a phase without communication (the LM head) exposes none
            comm = comm + count * k
            exposed = exposed + count * (xp.maximum(k - pinned - acc.overlap * window, 0.0) + pinned)
        if not static_equals(tau, 0.0):
            fixed = fixed + count * tau
    if acc.roofline == "global":
        roof = xp.maximum(t_c, t_h)
    return StageCosts(roof, t_c, t_h, comm, exposed, fixed)


class PhaseTime(NamedTuple):
    """One phase's part of a step on the largest stage (``phase_times``), s: the step time it takes
    (its windows ``max(compute, HBM)`` plus its exposed communication), compute, HBM, communication,
    exposed communication; and its layers per step (``pp·layers``)."""

    time: Any
    compute: Any
    hbm: Any
    comm: Any
    exposed: Any
    layers: Any


def phase_times(phases: dict[str, Phase], pp, acc: Accounting) -> dict[str, PhaseTime]:
    """Each phase's part of one step on the largest stage (``pp`` microbatches): ``time =
    pp·layers·(max(compute, HBM) + exposed + fixed)``, ``exposed = max(comm - pinned - overlap·max(compute,
    HBM), 0) + pinned``. With the local roofline (``Accounting.roofline = "phase"``) the times add
    up to ``stage_costs``' roofline + exposed + fixed; the step adds the pipeline sends (``pp·pipe``), the
    per-layer and per-sequence latencies and drafting (``cost.decode_point``)."""
    xp = namespace(phases, pp)
    out = {}
    for name, (c, h, k, pinned, layers, tau) in phases.items():
        window = xp.maximum(c, h)
        exposed = xp.maximum(k - pinned - acc.overlap * window, 0.0) + pinned
        n = pp * layers
        out[name] = PhaseTime(n * (window + exposed + tau), n * c, n * h, n * k, n * exposed, n)
    return out
