"""Epoch-style dense-equivalent size of an MoE: ``P_eq = c · P_total · k^b / E^a``.

Source: Epoch AI, "How do mixture-of-experts models compare to dense models in inference?"
(Gradient Updates; seed 001). Two ways to get ``a``, ``b`` (and ``c``), derivation in
docs/epoch-derivation.md:

- **components** (the post's argument): each inference cost of an MoE with ``P`` total params,
  ``E`` experts, top-``k`` is the cost of a dense model of some size, a coefficient-free power
  law in ``(E, k)``; fast short-context decode is a weighted geometric mean of them. ``a`` and
  ``b`` are the weighted sums of the component exponents, computed exactly with ``Fraction``
  (``a = 7/16``, ``b = 5/8``) and again by least squares over a grid of ``(E, k)``.
- **latency** (moejax's cost model): for each MoE of a design set and each regime, the dense
  model size ``Q`` of a named size family whose step time equals the MoE's is found with
  ``jax.lax.custom_root`` (so ``d log Q / d(anything)`` is implicit), then
  ``log(Q/P) = log c + b·log k − a·log E`` is fitted by least squares.

Modules: ``components`` (the component mode), ``latency`` (the latency-root mode and its
fits) and ``run`` (the latency mode's plan from ``conf/fit.yaml``, and its netCDF dataset).

Units: parameter counts are plain numbers, times in seconds, hardware in SI units (bytes/s,
FLOP/s, s). Every numeric function is pure ``jnp`` for one design and is lifted with ``vmap``.
"""

from __future__ import annotations

from .components import (
    GPT4,
    POST,
    Assumptions,
    PowerLaw,
    check_design_rank,
    comm_advantage,
    component_equivalent,
    component_laws,
    cube_root_size_from_layers,
    dense_equivalent,
    design_matrix,
    exponents,
    fit_components,
    format_table,
    geometric_mean_size,
    residual_table,
)
from .latency import (
    BRACKET,
    CUBE_ROOT_STEPS,
    FAMILIES,
    ITERATIONS,
    PHASES,
    UNBOUNDED_HBM,
    Regime,
    RegimeResult,
    _equivalent_sizes_jit,  # noqa: F401  (tests reach it through the package)
    _safeguarded_newton,  # noqa: F401
    build_design,
    check_designs_exist,
    equivalent_size,
    equivalent_sizes,
    family_model,
    family_offset,
    feasible_at,
    fit_power_law,
    fit_power_law_optax,
    latency_fit,
    moe_design,
    ols,
    step_time,
)
from .run import REGIME_KEYS, build_regime, latency_fits, plan_latency, write_dataset

__all__ = [
    "BRACKET",
    "CUBE_ROOT_STEPS",
    "FAMILIES",
    "GPT4",
    "ITERATIONS",
    "PHASES",
    "POST",
    "REGIME_KEYS",
    "UNBOUNDED_HBM",
    "Assumptions",
    "PowerLaw",
    "Regime",
    "RegimeResult",
    "build_design",
    "build_regime",
    "check_design_rank",
    "check_designs_exist",
    "comm_advantage",
    "component_equivalent",
    "component_laws",
    "cube_root_size_from_layers",
    "dense_equivalent",
    "design_matrix",
    "equivalent_size",
    "equivalent_sizes",
    "exponents",
    "family_model",
    "family_offset",
    "feasible_at",
    "fit_components",
    "fit_power_law",
    "fit_power_law_optax",
    "format_table",
    "geometric_mean_size",
    "latency_fit",
    "latency_fits",
    "moe_design",
    "ols",
    "plan_latency",
    "residual_table",
    "step_time",
    "write_dataset",
]
