"""The latency mode's plan from its config (conf/fit.yaml: regimes, design set, anchor,
accelerator; every error before any computation) and its netCDF dataset."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np

from ...catalogue import load_hardware, load_model
from ...engine.interrupts import deferred
from ...physics.specs import KV_MODES, Accounting, Partition, SpecError, Workload
from ...version import __version__
from .components import check_design_rank
from .latency import FAMILIES, PHASES, Regime, RegimeResult, build_design, check_designs_exist, latency_fit

REGIME_KEYS = {"phase", "batch", "context", "tp", "ep", "pp", "dp_attn", "kvp", "kv_mode", "accounting"}


def _number(field: str, value, minimum: float, strict: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not np.isfinite(value)
        or (value <= minimum if strict else value < minimum)
    ):
        raise SpecError(f"{field} = {value!r} is invalid: must be a finite number {'>' if strict else '>='} {minimum:g}")
    return float(value)


def _accounting(where: str, fields: dict) -> Accounting:
    """``Accounting`` from a config mapping; unknown fields and bad values are one-line errors."""
    if not isinstance(fields, dict):
        raise SpecError(f"{where} = {fields!r} is invalid: must be a mapping of Accounting fields")
    known = {f.name: f for f in dataclasses.fields(Accounting)}
    for key, value in fields.items():
        if key not in known:
            raise SpecError(f"{where}.{key} is not a known field: allowed {', '.join(known)}")
        static = known[key].metadata.get("static")
        if not static and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SpecError(f"{where}.{key} = {value!r} is invalid: must be a number")
    values = {k: (v if known[k].metadata.get("static") else float(v)) for k, v in fields.items()}
    try:
        return Accounting(**values)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None


def build_regime(name: str, spec, accounting: dict):
    """A ``Regime`` from its conf/fit.yaml entry (validated; one-line ``SpecError`` otherwise)."""
    if not isinstance(spec, dict):
        raise SpecError(f"regime_defs.{name} = {spec!r} is invalid: must be a mapping")
    unknown = sorted(set(spec) - REGIME_KEYS)
    if unknown:
        raise SpecError(f"regime_defs.{name}.{unknown[0]} is not a known field: allowed {', '.join(sorted(REGIME_KEYS))}")
    phase = spec.get("phase", "decode")
    if phase not in PHASES:
        raise SpecError(f"regime_defs.{name}.phase = {phase!r} is invalid: allowed {', '.join(PHASES)}")
    batch = _number(f"regime_defs.{name}.batch", spec.get("batch"), 0.0, strict=True)
    context = _number(f"regime_defs.{name}.context", spec.get("context"), 1.0)
    kv_mode = spec.get("kv_mode", "none")
    if kv_mode not in KV_MODES:
        raise SpecError(f"regime_defs.{name}.kv_mode = {kv_mode!r} is invalid: allowed {', '.join(KV_MODES)}")
    degrees = {f: _number(f"regime_defs.{name}.{f}", spec.get(f, 1), 1.0) for f in ("tp", "ep", "pp", "dp_attn", "kvp")}
    acc = _accounting(f"regime_defs.{name}.accounting", {**accounting, **(spec.get("accounting") or {})})
    try:
        part = Partition(**degrees, kv_mode=float(KV_MODES[kv_mode]))
        wl = Workload(context=context, batch=batch)
    except SpecError as e:
        raise SpecError(f"regime_defs.{name}: {e}") from None
    return Regime(partition=part, workload=wl, accounting=acc, name=name, phase=phase)


def plan_latency(cfg: dict) -> dict:
    """Validate everything the latency mode needs before any computation (so errors leave no file).
    ``cfg``: conf/fit.yaml's plain values (resolved at the command boundary)."""
    if cfg["family"] not in FAMILIES:
        raise SpecError(f"family = {cfg['family']!r} is unknown: allowed {', '.join(FAMILIES)}")
    names = list(cfg["regimes"]) if cfg["regimes"] is not None else []
    defs = cfg["regime_defs"] or {}
    if not names:
        raise SpecError(f"regimes is empty: name at least one of {', '.join(defs) or '(none defined in regime_defs)'}")
    for name in names:
        if name not in defs:
            raise SpecError(f"regimes entry {name!r} is unknown: defined in regime_defs are {', '.join(defs)}")
    if len(set(names)) != len(names):
        raise SpecError(f"regimes = {names} is invalid: a regime is named twice")
    accounting = cfg["accounting"] or {}
    _accounting("accounting", accounting)
    regimes = [build_regime(n, defs[n], accounting) for n in names]
    design = cfg["design"]
    frac = _number("design.max_k_fraction", design.get("max_k_fraction", 0.5), 0.0, strict=True)
    total, n_experts, top_k = build_design(
        design.get("total_params"), design.get("n_experts"), design.get("top_k"), frac, design.get("pairs")
    )
    check_design_rank(n_experts, top_k)
    dtypes = cfg["dtypes"] or {}
    anchor = load_model(cfg["anchor"], **dtypes)
    if float(anchor.n_experts) != 1:
        raise SpecError(f"anchor = {cfg['anchor']!r} is invalid: the cube-root family needs a dense anchor (n_experts = 1)")
    hw = load_hardware(cfg["accelerator"])
    check_designs_exist(total, n_experts, top_k, anchor)
    return {"regimes": regimes, "total": total, "n_experts": n_experts, "top_k": top_k, "anchor": anchor, "hw": hw}


def latency_fits(plan: dict, family: str) -> list[RegimeResult]:
    """``latency_fit`` of the plan's design set in each of its regimes."""
    return [
        latency_fit(plan["total"], plan["n_experts"], plan["top_k"], plan["hw"], r, plan["anchor"], family)
        for r in plan["regimes"]
    ]


def write_dataset(out: Path, cfg: dict, plan: dict, results, config_text: str) -> None:
    """CF-style netCDF (designs × regimes), written to a temporary name then renamed. ``cfg``: the
    plain config values; ``config_text``: the config as YAML (recorded in the attrs)."""
    import xarray as xr  # here: components mode and bad input never write a dataset (startup time)

    from ...engine.dataset import disk_full_is_one_line

    regs = plan["regimes"]
    dr = ("design", "regime")
    stack = lambda attr: np.stack([getattr(r, attr) for r in results], axis=1)  # noqa: E731
    fit = lambda key: np.array([r.fit[key] for r in results])  # noqa: E731
    opt = lambda key: np.array([r.fit_optax[key] for r in results])  # noqa: E731
    reg_float = lambda get: np.array([float(get(r)) for r in regs])  # noqa: E731
    data = {
        "total_params": ("design", plan["total"], {"units": "1", "long_name": "MoE total parameters P_total"}),
        "n_experts": ("design", plan["n_experts"], {"units": "1", "long_name": "routed experts E"}),
        "top_k": ("design", plan["top_k"], {"units": "1", "long_name": "experts per token k"}),
        "active_params": ("design", results[0].active, {"units": "1", "long_name": "MoE active parameters per token"}),
        "p_eq": (
            dr,
            stack("p_eq"),
            {"units": "1", "long_name": "dense-equivalent size Q: dense model of the family with the MoE's step time"},
        ),
        "p_eq_fitted": (
            dr,
            np.stack([r.fit["fitted"] for r in results], axis=1),
            {"units": "1", "long_name": "fitted c*P_total*k^b/E^a"},
        ),
        "step_time_moe": (dr, stack("t_moe"), {"units": "s", "long_name": "MoE step time (memory feasibility ignored)"}),
        "step_time_dense": (dr, stack("t_dense"), {"units": "s", "long_name": "step time of the dense model of size p_eq"}),
        "fits_in_hbm": (
            dr,
            stack("feasible").astype(np.int8),
            {
                "long_name": "the MoE fits in the accelerator's HBM in this regime (not required by the fit)",
                "flag_values": np.array([0, 1], dtype=np.int8),
                "flag_meanings": "does_not_fit fits",
            },
        ),
        "a": ("regime", fit("a"), {"units": "1", "long_name": "fitted exponent of E (closed-form least squares)"}),
        "b": ("regime", fit("b"), {"units": "1", "long_name": "fitted exponent of k (closed-form least squares)"}),
        "c": ("regime", fit("c"), {"units": "1", "long_name": "fitted coefficient c"}),
        "r2": ("regime", fit("r2"), {"units": "1", "long_name": "R^2 of log(P_eq/P_total)"}),
        "se_a": ("regime", fit("se_a"), {"units": "1", "long_name": "standard error of a (residual variance)"}),
        "se_b": ("regime", fit("se_b"), {"units": "1", "long_name": "standard error of b (residual variance)"}),
        "a_optax": ("regime", opt("a"), {"units": "1", "long_name": "a from optax lbfgs on the same loss"}),
        "b_optax": ("regime", opt("b"), {"units": "1", "long_name": "b from optax lbfgs on the same loss"}),
        "c_optax": ("regime", opt("c"), {"units": "1", "long_name": "c from optax lbfgs on the same loss"}),
        "context": ("regime", reg_float(lambda r: r.workload.context), {"units": "1", "long_name": "context tokens"}),
        "batch": ("regime", reg_float(lambda r: r.workload.batch), {"units": "1", "long_name": "sequences (prompts) per step"}),
        "tp": ("regime", reg_float(lambda r: r.partition.tp), {"units": "1", "long_name": "tensor-parallel degree"}),
        "ep": (
            "regime",
            reg_float(lambda r: r.partition.ep),
            {"units": "1", "long_name": "expert-parallel degree (upper bound; min(ep, E) used)"},
        ),
        "phase": ("regime", np.array([r.phase for r in regs]), {"long_name": "decode or prefill"}),
    }
    ds = xr.Dataset(
        {k: (dims, v, attrs) for k, (dims, v, attrs) in data.items()},
        coords={
            "design": ("design", np.arange(len(plan["total"]), dtype=np.int32), {"long_name": "design index"}),
            "regime": ("regime", np.array([r.name for r in regs]), {"long_name": "serving regime (conf/fit.yaml)"}),
        },
    )
    ds.attrs = {
        "title": "moejax Epoch-style dense-equivalent fit: P_eq = c * P_total * k^b / E^a",
        "Conventions": "CF-1.10",
        "source": f"moejax {__version__} (jax {jax.__version__})",
        "config": config_text,
        "family": cfg["family"],
        "anchor": cfg["anchor"],
        "accelerator": cfg["accelerator"],
        "comment": "Q solves log t_dense(Q) = log t_moe per design (jax.lax.custom_root); fixed batch and partition per regime; "
        "HBM capacity ignored for the times (fits_in_hbm records it).",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        with disk_full_is_one_line("out", out, ds.nbytes), deferred():  # no signal raises inside HDF5
            ds.to_netcdf(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
