"""The calibration constants: each named constant's domain, unit and unconstrained
parametrisation (``theta``), and their checks."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ...physics.specs import Accounting, SpecError


@dataclasses.dataclass(frozen=True)
class Constant:
    """One named free constant: its domain, how it maps to an unconstrained ``theta``, its unit.

    ``domain`` is ``(low, high, low_closed, high_closed)``. Transforms: ``"logit"`` for the unit
    interval, ``"log"`` for positive scales, ``"softplus"`` (``value = unit * softplus(theta)``)
    for non-negative additive terms. A fitted value within 1e-9 (in its unit) of a closed end of
    its domain is set to that end and reported as "at its bound". ``init`` is where a fit starts
    when the problem gives no start (inside the open domain).
    """

    name: str
    domain: tuple
    transform: str
    unit: float
    unit_name: str
    init: float
    description: str

    def contains(self, v: float) -> bool:
        low, high, lc, hc = self.domain
        return (v >= low if lc else v > low) and (v <= high if hc else v < high)

    @property
    def rule(self) -> str:
        low, high, lc, hc = self.domain
        if high == math.inf:
            return f"{'>=' if lc else '>'} {low:g}"
        return f"in {'[' if lc else '('}{low:g}, {high:g}{']' if hc else ')'}"


UNIT, POSITIVE, NONNEGATIVE = (0.0, 1.0), (0.0, math.inf, False, False), (0.0, math.inf, True, False)
CONSTANTS = {
    c.name: c
    for c in (
        Constant(
            "hbm_usable_fraction",
            (*UNIT, False, True),
            "logit",
            1.0,
            "1",
            0.9,
            "fraction of HBM capacity usable for weights + KV (effective capacity)",
        ),
        Constant("reserve_bytes", NONNEGATIVE, "softplus", 1e9, "GB", 1e9, "bytes per GPU held back (activations, workspace)"),
        Constant("kv_scale", POSITIVE, "log", 1.0, "1", 1.0, "multiplier on stored and read KV bytes (KV accounting factor)"),
        Constant(
            "routing_skew",
            (*UNIT, True, False),
            "logit",
            1.0,
            "1",
            0.1,
            "routing concentrates on E*(1-skew) experts (physical expert accounting only)",
        ),
        Constant(
            "overlap", (*UNIT, True, True), "logit", 1.0, "1", 0.5, "fraction of each phase's window that hides its collectives"
        ),
        Constant("hbm_efficiency", (*UNIT, False, True), "logit", 1.0, "1", 0.9, "sustained / peak HBM bandwidth"),
        Constant("flops_efficiency", (*UNIT, False, True), "logit", 1.0, "1", 0.9, "sustained / peak FLOP/s"),
        Constant("layer_latency", NONNEGATIVE, "softplus", 1e-6, "us", 1e-6, "fixed overhead per layer per microbatch (s)"),
        Constant(
            "fp8_efficiency",
            (*UNIT, False, True),
            "logit",
            1.0,
            "1",
            0.9,
            "FP8 tensor-core efficiency relative to flops_efficiency",
        ),
        Constant(
            "fp4_efficiency",
            (*UNIT, False, True),
            "logit",
            1.0,
            "1",
            0.9,
            "FP4 tensor-core efficiency relative to flops_efficiency",
        ),
        Constant("comm_efficiency", (*UNIT, False, True), "logit", 1.0, "1", 0.9, "achieved / nominal link bandwidth"),
        Constant("collective_latency", NONNEGATIVE, "softplus", 1e-6, "us", 1e-6, "fixed launch cost per collective call (s)"),
        Constant("a2a_peer_latency", NONNEGATIVE, "softplus", 1e-6, "us", 1e-7, "per-peer cost of a direct all-to-all (s)"),
        Constant(
            "grouped_gemm_efficiency",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.0,
            "routed-expert (grouped) GEMM FLOP/s relative to dense GEMMs",
        ),
        Constant(
            "attention_efficiency",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.0,
            "attention score/value and linear-state FLOP/s relative to dense GEMMs",
        ),
        Constant(
            "sequence_latency",
            NONNEGATIVE,
            "softplus",
            1e-6,
            "us",
            1e-6,
            "host work per sequence per step per attention-DP rank (s)",
        ),
        Constant(
            "rocm_factor",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.5,
            "device time of a step on the ROCm stack relative to the kernel model (closed form: stack_fit)",
        ),
        Constant(
            "step_latency",
            NONNEGATIVE,
            "softplus",
            1e-3,
            "ms",
            1e-3,
            "engine host work per step outside the model's kernels (s)",
        ),
        Constant(
            "request_overhead",
            NONNEGATIVE,
            "softplus",
            1e-3,
            "ms",
            1e-2,
            "per-request time before the first token beyond the model's passes (s)",
        ),
        Constant(
            "warmup_share",
            (*UNIT, True, True),
            "logit",
            1.0,
            "1",
            0.1,
            "share of a closed-loop benchmark's requests in its start-up wave",
        ),
        *(
            Constant(f"tau_{c}", NONNEGATIVE, "softplus", 1e-6, "us", 5e-6, f"fixed cost per {c.replace('_', ' ')} kernel (s)")
            for c in ("gemm", "grouped_gemm", "attention", "elementwise")
        ),
        Constant(
            "attention_bw_efficiency",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.0,
            "KV / state streaming bandwidth of attention kernels relative to hbm_efficiency",
        ),
        Constant(
            "grouped_gemm_bw_efficiency",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.0,
            "routed-expert weight streaming bandwidth relative to hbm_efficiency",
        ),
        Constant(
            "weight_scale",
            POSITIVE,
            "log",
            1.0,
            "1",
            1.0,
            "multiplier on resident weight bytes in the memory check (not an Accounting leaf; b_max targets only)",
        ),
    )
}
ACCOUNTING_CONSTANTS = tuple(f.name for f in dataclasses.fields(Accounting) if not f.metadata.get("static"))
assert set(ACCOUNTING_CONSTANTS) | {"weight_scale"} == set(CONSTANTS)
DEFAULTS = {
    **{f.name: float(f.default) for f in dataclasses.fields(Accounting) if not f.metadata.get("static")},
    "weight_scale": 1.0,
}
BOUND_TOL = 1e-9


def to_value(name: str, theta):
    """Constant value from its unconstrained coordinate ``theta``."""
    c = CONSTANTS[name]
    if c.transform == "logit":
        return jax.nn.sigmoid(theta)
    if c.transform == "log":
        return jnp.exp(theta)
    return c.unit * jax.nn.softplus(theta)


def to_theta(name: str, value: float) -> float:
    """Inverse of ``to_value`` (host float); a value on the boundary is nudged inside by 1e-9."""
    c = CONSTANTS[name]
    v = float(value)
    if c.transform == "logit":
        v = min(max(v, BOUND_TOL), 1 - BOUND_TOL)
        return math.log(v / (1 - v))
    if c.transform == "log":
        return math.log(v)
    x = max(v / c.unit, BOUND_TOL)
    return x + math.log(-math.expm1(-x))  # softplus^-1


def snap(name: str, value: float) -> tuple[float, bool]:
    """(value, at_bound): a value within ``BOUND_TOL`` units of a closed end of its domain is set
    to that end (a sigmoid or softplus only reaches it in the limit)."""
    c = CONSTANTS[name]
    low, high, lc, hc = c.domain
    if lc and value - low < BOUND_TOL * c.unit:
        return low, True
    if hc and high - value < BOUND_TOL * c.unit:
        return high, True
    return value, False


def theta_derivative(name: str, value: float) -> float:
    """``d value / d theta`` at ``value``: the column scale of the identifiability Jacobian. On the
    boundary of the transform (where it vanishes) the constant's unit is used instead."""
    c = CONSTANTS[name]
    v = float(value)
    if c.transform == "logit":
        d = v * (1 - v)
    elif c.transform == "log":
        d = v
    else:
        d = c.unit * -math.expm1(-v / c.unit)  # softplus' = sigmoid(theta) = 1 - exp(-x)
    return d if d > 1e-6 * c.unit else c.unit


def coordinate_name(name: str, value: float) -> str:
    """How the identifiability Jacobian's column for ``name`` is measured at ``value``."""
    c = CONSTANTS[name]
    if theta_derivative(name, value) == c.unit and c.transform != "log":
        return f"{name}/{c.unit_name}" if c.unit_name != "1" else name
    return {"logit": "logit ", "log": "log ", "softplus": "softplus^-1 "}[c.transform] + name


def check_constants(values: dict, where: str) -> None:
    """One-line ``SpecError`` for an unknown name or a value outside its constant's domain."""
    for name, v in values.items():
        if name not in CONSTANTS:
            raise SpecError(f"{where}.{name} is not a calibration constant: allowed {', '.join(CONSTANTS)}")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{where}.{name} = {v!r} is invalid: must be a finite number")
        if not CONSTANTS[name].contains(float(v)):
            raise SpecError(f"{where}.{name} = {v!r} is invalid: must be {CONSTANTS[name].rule}")
