"""decode_phases: the decode step split by phase, through the kernel's public names, adds up to decode_point."""

import pytest

from moejax import Accounting, Partition, Workload, load_hardware, load_model
from moejax.catalogue import load_accounting
from moejax.physics.cost import Phase, decode_phases, decode_point, stage_costs, stage_scale


@pytest.mark.parametrize("preset", [None, "kernel"])  # defaults (no kernel fixed costs) and the kernel-structured step
@pytest.mark.parametrize(
    "model,partition,kinds",
    [
        ("deepseek-v3", Partition(tp=8.0, ep=8.0, pp=2.0), {"attention", "dense", "moe", "head"}),
        ("gpt-oss-120b", Partition(tp=4.0, ep=8.0, dp_attn=2.0), {"attention", "moe", "head", "sliding"}),
        ("qwen3-next-80b-a3b", Partition(tp=8.0, ep=8.0), {"attention", "moe", "head", "linear"}),
    ],
)
def test_phases_add_up_to_the_step(model, partition, kinds, preset):
    acc = Accounting() if preset is None else load_accounting(preset, integer_batch=False)
    m, hw, wl = load_model(model), load_hardware("h100-sxm"), Workload(context=8192.0)
    r = decode_point(m, hw, partition, wl, acc)
    d = decode_phases(m, hw, partition, wl, acc)
    assert {k for k, ph in d.phases.items() if float(ph.layers) > 0} == kinds
    assert all(isinstance(ph, Phase) for ph in d.phases.values())
    stage = stage_costs(d.phases, partition.pp, acc)
    assert float(stage.compute) == float(r.t_compute) and float(stage.hbm) == float(r.t_hbm)
    assert float(stage.comm + partition.pp * d.pipe) == pytest.approx(float(r.t_comm), rel=1e-6)
    assert float(d.batch) == float(r.batch) == float(d.b_max)  # B = B_max
    pp, overlap = float(partition.pp), float(acc.overlap)

    def share(ph):  # the phase's part of the step: its windows and exposed communication
        c, h, k, pinned, layers, fixed = (float(x) for x in ph)
        return pp * layers * (max(c, h) + max(k - pinned - overlap * max(c, h), 0.0) + pinned + fixed)

    by_phase = sum(share(ph) for ph in d.phases.values())
    assert float(stage.roofline + stage.exposed + stage.fixed) == pytest.approx(by_phase, rel=1e-5)
    fixed = (
        pp * float(d.pipe)
        + float(acc.layer_latency) * float(m.n_layers * stage_scale(m, partition))
        + float(acc.sequence_latency) * float(d.b_eval) / float(partition.dp_attn)
        + float(acc.step_latency)
    )
    assert float(r.step_time) == pytest.approx(by_phase + fixed, rel=1e-5)


def test_trace_once_keeps_a_bounded_number_of_variants(monkeypatch):
    """Python numbers key trace_once's cache (they stay static): a loop over new ones keeps the newest
    ``CACHE_ENTRIES`` variants (4 here, 256 in use: each variant is a compile), and every call still
    gives the plain function's value."""
    import jax

    from moejax.physics import xp

    monkeypatch.setattr(xp, "CACHE_ENTRIES", 4)
    scaled = xp.trace_once(lambda x, k: k * x)
    for k in range(10):
        assert float(jax.jit(lambda x, k=float(k): scaled(x, k))(2.0)) == 2.0 * k
    assert len(scaled.variants) == 4 and list(scaled.variants)[-1][1][-1][2] == 9.0  # the newest kept


def test_trace_once_stages_only_under_jit():
    """Under ``jit`` (also around ``vmap`` or ``grad``) trace_once compiles a nested program; under
    eager ``vmap`` and ``grad`` it runs the function as written, whose operations run one by one
    from executables shared by every static value (the oracle comparisons of tests/test_reference.py
    run 24 switch combinations eagerly instead of compiling 24 programs). Same values either way."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from moejax.physics import xp

    scaled = xp.trace_once(lambda x, k: k * x**2)
    x = jnp.arange(3.0)
    eager = jax.vmap(lambda v: scaled(v, 3.0))(x), jax.grad(lambda v: scaled(v, 3.0))(2.0)
    assert not scaled.variants  # nothing compiled
    staged = jax.jit(jax.vmap(lambda v: scaled(v, 3.0)))(x), jax.jit(jax.grad(lambda v: scaled(v, 3.0)))(2.0)
    assert len(scaled.variants) == 1  # one nested program (same arguments, same static k) serves both
    np.testing.assert_array_equal(eager[0], staged[0])
    assert float(eager[1]) == float(staged[1]) == 12.0
