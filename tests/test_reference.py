"""The vectorised JAX kernel against the independent pure-Python oracle on random valid points."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from points import random_point

from moejax import Accounting, HardwareSpec, ModelSpec, Partition, Workload, decode_point
from moejax.physics.partition import partition_valid
from moejax.physics.reference import reference_decode

N_POINTS = 1200  # split over the 12 static accounting switch combinations
RTOL, ATOL = 1e-6, 1e-15
FIELDS = ("t_compute", "t_hbm", "t_comm", "t_comm_exposed", "step_time", "batch", "b_max", "reuse",
          "throughput", "throughput_per_gpu", "weight_bytes_per_gpu", "kv_bytes_per_gpu", "memory_per_gpu")


def _stack(cls, dicts):
    keys = set().union(*dicts)
    defaults = {f: getattr(cls, f, None) for f in keys}
    return cls(**{k: np.array([d.get(k, defaults[k]) for d in dicts], dtype=float) for k in keys})


SWITCHES = list(itertools.product(("physical", "paper-active", "paper-pool"), ("phase", "global"), (True, False)))


@pytest.mark.parametrize("traffic,roofline,integer", SWITCHES)
def test_kernel_matches_reference(traffic, roofline, integer):
    rng = np.random.default_rng(hash((traffic, roofline, integer)) % 2**32)
    pts = [random_point(rng) for _ in range(N_POINTS // len(SWITCHES))]
    models, hws, parts, wls, accs = (list(x) for x in zip(*pts))
    m, hw, p, wl = _stack(ModelSpec, models), _stack(HardwareSpec, hws), _stack(Partition, parts), _stack(Workload, wls)
    acc = _stack(Accounting, accs)
    acc = Accounting(**{k: getattr(acc, k) for k in accs[0]}, expert_traffic=traffic, roofline=roofline, integer_batch=integer)
    assert bool(jnp.all(jax.vmap(partition_valid)(m, p)))
    out = jax.jit(jax.vmap(decode_point))(m, hw, p, wl, acc)
    n_feasible = 0
    for i, (mi, hi, pi, wi, ai) in enumerate(pts):
        ref = reference_decode(mi, hi, pi, wi, {**ai, "expert_traffic": traffic, "roofline": roofline, "integer_batch": integer})
        assert bool(out.feasible[i]) == ref["feasible"], (i, mi, pi, wi)
        assert int(out.bound[i]) == ref["bound"], (i, ref)
        n_feasible += ref["feasible"]
        for f in FIELDS:
            np.testing.assert_allclose(float(getattr(out, f)[i]), ref[f], rtol=RTOL, atol=ATOL, err_msg=f"{f} at point {i}")
    assert 0 < n_feasible < len(pts)  # both branches exercised
