"""The vectorised JAX kernel against the independent pure-Python oracle on random valid points."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from points import random_point, random_prefill_point

from moejax import Accounting, HardwareSpec, ModelSpec, Partition, Workload, decode_point, prefill_point
from moejax.physics.partition import partition_valid
from moejax.physics.reference import reference_decode, reference_prefill

N_POINTS = 1200  # decode, split over the 12 static accounting switch combinations
N_PREFILL = 300  # prefill, likewise
RTOL, ATOL = 1e-6, 1e-15  # float64 (tests/conftest.py enables x64)
FIELDS = (
    "t_compute",
    "t_hbm",
    "t_comm",
    "t_comm_exposed",
    "step_time",
    "batch",
    "b_max",
    "reuse",
    "throughput",
    "throughput_per_gpu",
    "tokens_per_s_per_user",
    "weight_bytes_per_gpu",
    "kv_bytes_per_gpu",
    "memory_per_gpu",
)


def _stack(cls, dicts):
    """One batched spec; a field no point sets takes its default on every point (still batched)."""
    keys = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("static")}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return cls(**{k: np.array([d.get(k, defaults[k]) for d in dicts], dtype=float) for k in keys})


SWITCHES = list(itertools.product(("physical", "paper-active", "paper-pool"), ("phase", "global"), (True, False)))


def _compare(kernel, oracle, pts, traffic, roofline, integer, jit=False):
    """Kernel vs oracle on every point. The switches are static, so a jitted kernel compiles once per
    combination (~2.5 s each); by default the vmapped kernel runs op by op instead, whose per-operation
    executables are shared by every combination of equal batch size (same numbers to ~1e-14). The
    patterned tests keep ``jit=True``, so the compiled path is held to the oracle too."""
    models, hws, parts, wls, accs = (list(x) for x in zip(*pts))
    m, hw, p, wl = _stack(ModelSpec, models), _stack(HardwareSpec, hws), _stack(Partition, parts), _stack(Workload, wls)
    acc = _stack(Accounting, accs)
    acc = dataclasses.replace(acc, expert_traffic=traffic, roofline=roofline, integer_batch=integer)
    assert bool(jnp.all(jax.vmap(partition_valid)(m, p)))
    out = (jax.jit(jax.vmap(kernel)) if jit else jax.vmap(kernel))(m, hw, p, wl, acc)
    out = jax.tree_util.tree_map(np.asarray, out)  # index on the host, not one device op per value
    n_feasible = 0
    for i, (mi, hi, pi, wi, ai) in enumerate(pts):
        ref = oracle(mi, hi, pi, wi, {**ai, "expert_traffic": traffic, "roofline": roofline, "integer_batch": integer})
        assert bool(out.feasible[i]) == ref["feasible"], (i, mi, pi, wi)
        assert int(out.bound[i]) == ref["bound"], (i, ref)
        n_feasible += ref["feasible"]
        for f in FIELDS:
            np.testing.assert_allclose(float(getattr(out, f)[i]), ref[f], rtol=RTOL, atol=ATOL, err_msg=f"{f} at point {i}")
    return n_feasible


@pytest.mark.parametrize("traffic,roofline,integer", SWITCHES)
def test_kernel_matches_reference(traffic, roofline, integer):
    rng = np.random.default_rng(SWITCHES.index((traffic, roofline, integer)))  # reproducible across runs
    pts = [random_point(rng) for _ in range(N_POINTS // len(SWITCHES))]
    n_feasible = _compare(decode_point, reference_decode, pts, traffic, roofline, integer)
    assert 0 < n_feasible < len(pts)  # both branches exercised


@pytest.mark.parametrize("traffic,roofline,integer", SWITCHES)
def test_prefill_matches_reference(traffic, roofline, integer):
    rng = np.random.default_rng(1000 + SWITCHES.index((traffic, roofline, integer)))
    pts = [random_prefill_point(rng) for _ in range(N_PREFILL // len(SWITCHES))]
    n_feasible = _compare(prefill_point, reference_prefill, pts, traffic, roofline, integer)
    assert 0 < n_feasible < len(pts)  # both branches exercised


N_PATTERNED = 240  # decode + prefill points with per-layer attention patterns


@pytest.mark.parametrize("prefill", [False, True])
def test_patterned_points_match_reference(prefill):
    """Sliding, chunked, sparse (DSA) and linear layers: the kernel's per-kind counts against the
    oracle's layer-by-layer list (moejax/physics/reference_patterns.py), on random patterned points."""
    from points import random_patterned_point

    rng = np.random.default_rng(2000 + prefill)
    pts = [random_patterned_point(rng, prefill) for _ in range(N_PATTERNED // 2)]
    kernel, oracle = (prefill_point, reference_prefill) if prefill else (decode_point, reference_decode)
    n_feasible = _compare(kernel, oracle, pts, "physical", "phase", True, jit=True)
    assert 0 < n_feasible < len(pts)


@pytest.mark.parametrize("patterned", [False, True])
def test_mixed_step_matches_reference(patterned):
    """The chunked-prefill mixed step (decode step + ``chunk_tokens`` prompt tokens of ``prompt_len``-token
    prompts) against the oracle's, on random decode points with random chunks (patterned models too)."""
    from points import random_patterned_point

    rng = np.random.default_rng(3000 + patterned)
    pts = [random_patterned_point(rng, False) if patterned else random_point(rng) for _ in range(60)]
    chunks = rng.choice([1.0, 37.0, 512.0, 8192.0], size=len(pts))
    prompts = rng.choice([128.0, 1024.0, 8192.0], size=len(pts))
    by_point = {id(pt[3]): (c, p) for pt, c, p in zip(pts, chunks, prompts)}

    def kernel(m, hw, p, wl, acc, c=jnp.asarray(chunks), lp=jnp.asarray(prompts)):
        return jax.vmap(lambda *a: decode_point(*a[:5], chunk_tokens=a[5], prompt_len=a[6]))(m, hw, p, wl, acc, c, lp)

    def oracle(model, hw, part, wl, acc):
        c, lp = by_point[id(wl)]
        return reference_decode(model, hw, part, wl, acc, chunk_tokens=c, prompt_len=lp)

    n_feasible = _compare_prebatched(kernel, oracle, pts)
    assert 0 < n_feasible < len(pts)


def _compare_prebatched(kernel, oracle, pts):
    """``_compare`` for a kernel that is already vmapped (physical traffic, phase roofline, integer batch)."""
    models, hws, parts, wls, accs = (list(x) for x in zip(*pts))
    m, hw, p, wl = _stack(ModelSpec, models), _stack(HardwareSpec, hws), _stack(Partition, parts), _stack(Workload, wls)
    acc = dataclasses.replace(_stack(Accounting, accs), expert_traffic="physical", roofline="phase", integer_batch=True)
    out = jax.tree_util.tree_map(np.asarray, jax.jit(kernel)(m, hw, p, wl, acc))
    n_feasible = 0
    for i, (mi, hi, pi, wi, ai) in enumerate(pts):
        ref = oracle(mi, hi, pi, wi, {**ai, "expert_traffic": "physical", "roofline": "phase", "integer_batch": True})
        assert bool(out.feasible[i]) == ref["feasible"], (i, mi, pi, wi)
        n_feasible += ref["feasible"]
        for f in FIELDS:
            np.testing.assert_allclose(float(getattr(out, f)[i]), ref[f], rtol=RTOL, atol=ATOL, err_msg=f"{f} at point {i}")
    return n_feasible
