"""A sweep's operating points on the roofline: arithmetic intensity and achieved FLOP/s per GPU.

For one decode step of a point (per GPU, SI units):

- achieved FLOP/s = tokens/s/GPU × useful FLOP per token (``flop_per_token``);
- HBM bytes per step = ``t_hbm`` × HBM bandwidth × ``hbm_efficiency`` (``t_hbm`` is the busiest
  GPU's HBM time at the derated bandwidth, so this undoes the derating exactly);
- arithmetic intensity = FLOP per step / HBM bytes per step, FLOP per step = achieved FLOP/s ×
  ``step_time``.

FLOP per step is the replica's average per GPU and the bytes are the busiest GPU's, so a point
sits at or below the memory roof ``bw × intensity`` (step_time ≥ t_hbm); draft-token
verification FLOPs of speculative decoding are not counted (accepted tokens only).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..physics import arch
from ..physics.specs import ModelSpec


def flop_per_token(m: ModelSpec, context: float) -> float:
    """Useful FLOP per decoded token (FLOP): two per active weight (one multiply-add) plus the
    attention score and value FLOPs over ``context`` tokens in every decoder layer.

    DeepSeek-V3 at 1,024 tokens: 2 × 36.62e9 active + 61 layers × 2·128·(2·512 + 64)·1024 =
    73.24e9 + 61 × 285,212,672 = 90.64e9 FLOP.
    """
    _, active = arch.param_counts(m)
    return float(2 * active + m.n_layers * arch.score_flops_per_token_layer(m, context))


def model_rows(ds: xr.Dataset) -> dict | None:
    """``{(model, variant, kappa): ModelSpec}`` from the dataset's ``resolved_specs`` (kernel rows:
    per model its MoE, then one dense baseline per κ, as ``engine.plan.build_plan`` stacks them);
    None if the attribute is missing or does not match the coordinates."""
    try:
        rows = json.loads(ds.attrs["resolved_specs"])["rows"]
    except (KeyError, ValueError):
        return None
    models, kappas = [str(m) for m in ds.model.values], [float(k) for k in ds.kappa.values]
    n = len(next(iter(rows.values())))
    if n != len(models) * (1 + len(kappas)):
        return None
    spec = lambda r: ModelSpec(**{k: float(v[r]) for k, v in rows.items()})
    out = {}
    for i, name in enumerate(models):
        base = i * (1 + len(kappas))
        out[(name, "moe", None)] = spec(base)
        for j, k in enumerate(kappas):
            out[(name, "dense", k)] = spec(base + 1 + j)
    return out


def operating_points(
    ds: xr.Dataset, model: str, hardware: str, num_gpus: int, kappa: float, hbm_bw: float
) -> dict[str, dict[str, np.ndarray]]:
    """Per variant (``moe``, ``dense``): ``context``, ``intensity`` (FLOP/byte) and ``achieved``
    (FLOP/s per GPU) of the feasible points of the selection, over the dataset's contexts.
    ``hbm_bw``: the accelerator's HBM bandwidth in byte/s. Empty if the specs are unavailable."""
    specs = model_rows(ds)
    if specs is None:
        return {}
    try:
        eff = float(json.loads(ds.attrs["accounting"]).get("hbm_efficiency", 1.0))
    except (KeyError, ValueError):
        eff = 1.0
    out = {}
    for variant, key in (("moe", (model, "moe", None)), ("dense", (model, "dense", float(kappa)))):
        at = ds.sel(model=model, variant=variant, kappa=kappa, hardware=hardware, num_gpus=num_gpus)
        ok = at.feasible.values.astype(bool)
        if variant == "dense" and "baseline_exists" in ds:
            ok &= bool(ds.baseline_exists.sel(model=model, kappa=kappa))
        ctx = ds.context.values[ok]
        flops = np.array([flop_per_token(specs[key], c) for c in ctx])
        achieved = at.throughput_per_gpu.values[ok] * flops
        nbytes = at.t_hbm.values[ok] * hbm_bw * eff
        out[variant] = {"context": ctx, "achieved": achieved, "intensity": achieved * at.step_time.values[ok] / nbytes}
    return out
