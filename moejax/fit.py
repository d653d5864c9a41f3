"""Epoch-style dense-equivalent fit: ``python -m moejax.fit mode=components`` or ``mode=latency``.

``components``: the post's argument (docs/epoch-derivation.md) — component power laws, exact
``a = 7/16``, ``b = 5/8``, the same by least squares, and the residual table against the post.
``latency``: for a design set of MoEs and each named regime (conf/fit.yaml), the dense size
with the same step time (moejax cost model, implicit root), fitted to ``P_eq = c·P·k^b/E^a``;
writes a netCDF dataset (designs × regimes) to ``out`` (default ``fit.nc`` in the run dir).

Both end with one JSON line. Bad input: one ``error: ...`` line on stderr, exit code 2, no file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import hydra
import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .cli import run_command
from .specs import Accounting, Partition, SpecError, Workload

MODES = ("components", "latency")
REGIME_KEYS = {"phase", "batch", "context", "tp", "ep", "pp", "dp_attn", "kvp", "kv_mode", "accounting"}


def _number(field: str, value, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or (
            value <= minimum if strict else value < minimum):
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
    from .analysis.epoch import PHASES, Regime
    from .specs import KV_MODES

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


def run_components() -> dict:
    """Print the derivation summary and residual table; return the JSON record."""
    from .analysis import epoch

    laws = epoch.component_laws()
    a, b = epoch.exponents(laws)
    es, ks = np.meshgrid([2.0, 4, 8, 16, 32, 64, 128, 256], [1.0, 2, 4, 8])
    keep = ks <= es / 2
    fit = epoch.fit_components(es[keep], ks[keep], laws)
    print("Epoch dense-equivalent size, component mode: P_eq = P_total · k^b / E^a")
    print("assumptions: dense depth, d_model, d_ff ∝ size^(1/3); fast short-context decode = geometric mean")
    print(f"{'component':<14} {'weight':>6} {'E exp':>6} {'k exp':>6}  derivation")
    for law in laws:
        print(f"{law.name:<14} {str(law.weight):>6} {str(law.e_exp):>6} {str(law.k_exp):>6}  {law.derivation}")
    print(f"a = Σ w·(E exp) = {a} = {float(a):.4f};  b = Σ w·(k exp) = {b} = {float(b):.4f}")
    print(f"least squares over {int(keep.sum())} (E, k) points: a = {fit['a']:.15f}, b = {fit['b']:.15f}, c = {fit['c']:.15f}")
    rows = epoch.residual_table()
    print()
    print(epoch.format_table(rows))
    return {"mode": "components", "a": float(a), "b": float(b), "a_exact": str(a), "b_exact": str(b),
            "a_lstsq": fit["a"], "b_lstsq": fit["b"], "c_lstsq": fit["c"],
            "residuals": [{k: r[k] for k in ("quantity", "reference", "moejax", "rel_residual")} for r in rows]}


def plan_latency(cfg: DictConfig) -> dict:
    """Validate everything the latency mode needs before any computation (so errors leave no file)."""
    from .analysis import epoch
    from .catalogue import load_hardware, load_model

    if cfg.family not in epoch.FAMILIES:
        raise SpecError(f"family = {cfg.family!r} is unknown: allowed {', '.join(epoch.FAMILIES)}")
    names = list(cfg.regimes) if cfg.regimes is not None else []
    defs = OmegaConf.to_container(cfg.regime_defs, resolve=True) or {}
    if not names:
        raise SpecError(f"regimes is empty: name at least one of {', '.join(defs) or '(none defined in regime_defs)'}")
    for name in names:
        if name not in defs:
            raise SpecError(f"regimes entry {name!r} is unknown: defined in regime_defs are {', '.join(defs)}")
    if len(set(names)) != len(names):
        raise SpecError(f"regimes = {names} is invalid: a regime is named twice")
    accounting = OmegaConf.to_container(cfg.accounting, resolve=True) or {}
    _accounting("accounting", accounting)
    regimes = [build_regime(n, defs[n], accounting) for n in names]
    design = OmegaConf.to_container(cfg.design, resolve=True)
    frac = _number("design.max_k_fraction", design.get("max_k_fraction", 0.5), 0.0, strict=True)
    total, n_experts, top_k = epoch.build_design(design.get("total_params"), design.get("n_experts"),
                                                 design.get("top_k"), frac, design.get("pairs"))
    epoch.check_design_rank(n_experts, top_k)
    dtypes = OmegaConf.to_container(cfg.dtypes, resolve=True) or {}
    anchor = load_model(cfg.anchor, **dtypes)
    if float(anchor.n_experts) != 1:
        raise SpecError(f"anchor = {cfg.anchor!r} is invalid: the cube-root family needs a dense anchor (n_experts = 1)")
    hw = load_hardware(cfg.accelerator)
    epoch.check_designs_exist(total, n_experts, top_k, anchor)
    return {"regimes": regimes, "total": total, "n_experts": n_experts, "top_k": top_k, "anchor": anchor, "hw": hw}


def run_latency(cfg: DictConfig, out: Path) -> dict:
    """Solve, fit, print per regime, write the dataset atomically; return the JSON record."""
    from .analysis import epoch

    plan = plan_latency(cfg)
    results = [epoch.latency_fit(plan["total"], plan["n_experts"], plan["top_k"], plan["hw"], r, plan["anchor"], cfg.family)
               for r in plan["regimes"]]
    print(f"dense family {cfg.family} (anchor {cfg.anchor}), {cfg.accelerator}, {len(plan['total'])} MoE designs")
    record = {}
    for reg, res in zip(plan["regimes"], results):
        f, o = res.fit, res.fit_optax
        wl, p = reg.workload, reg.partition
        print(f"{reg.name:<13} ({reg.phase}, batch {float(wl.batch):g}, context {float(wl.context):g}, tp {float(p.tp):g}, "
              f"ep ≤ {float(p.ep):g}): P_eq = {f['c']:.4g} · P_total · k^{f['b']:.4f} / E^{f['a']:.4f}   "
              f"R² = {f['r2']:.4f}, se(a) = {f['se_a']:.4f}, se(b) = {f['se_b']:.4f}; "
              f"optax lbfgs a = {o['a']:.6f}, b = {o['b']:.6f}, c = {o['c']:.6f}; fits in HBM {int(res.feasible.sum())}/{len(res.feasible)}")
        record[reg.name] = {"a": f["a"], "b": f["b"], "c": f["c"], "r2": f["r2"], "se_a": f["se_a"], "se_b": f["se_b"],
                            "a_optax": o["a"], "b_optax": o["b"], "c_optax": o["c"]}
    write_dataset(out, cfg, plan, results)
    print(f"wrote {out}")
    return {"mode": "latency", "regimes": record}


def write_dataset(out: Path, cfg: DictConfig, plan: dict, results) -> None:
    """CF-style netCDF (designs × regimes), written to a temporary name then renamed."""
    import xarray as xr

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
        "p_eq": (dr, stack("p_eq"), {"units": "1", "long_name": "dense-equivalent size Q: dense model of the family "
                                                                "with the MoE's step time"}),
        "p_eq_fitted": (dr, np.stack([r.fit["fitted"] for r in results], axis=1),
                        {"units": "1", "long_name": "fitted c*P_total*k^b/E^a"}),
        "step_time_moe": (dr, stack("t_moe"), {"units": "s", "long_name": "MoE step time (memory feasibility ignored)"}),
        "step_time_dense": (dr, stack("t_dense"), {"units": "s", "long_name": "step time of the dense model of size p_eq"}),
        "fits_in_hbm": (dr, stack("feasible").astype(np.int8),
                        {"long_name": "the MoE fits in the accelerator's HBM in this regime (not required by the fit)",
                         "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "does_not_fit fits"}),
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
        "ep": ("regime", reg_float(lambda r: r.partition.ep), {"units": "1", "long_name": "expert-parallel degree (upper bound; min(ep, E) used)"}),
        "phase": ("regime", np.array([r.phase for r in regs]), {"long_name": "decode or prefill"}),
    }
    ds = xr.Dataset({k: (dims, v, attrs) for k, (dims, v, attrs) in data.items()},
                    coords={"design": ("design", np.arange(len(plan["total"]), dtype=np.int32), {"long_name": "design index"}),
                            "regime": ("regime", np.array([r.name for r in regs]), {"long_name": "serving regime (conf/fit.yaml)"})})
    ds.attrs = {"title": "moejax Epoch-style dense-equivalent fit: P_eq = c * P_total * k^b / E^a",
                "Conventions": "CF-1.10", "source": f"moejax {__version__} (jax {jax.__version__})",
                "config": OmegaConf.to_yaml(cfg, resolve=True), "family": cfg.family, "anchor": cfg.anchor,
                "accelerator": cfg.accelerator,
                "comment": "Q solves log t_dense(Q) = log t_moe per design (jax.lax.custom_root); fixed batch and partition per regime; "
                           "HBM capacity ignored for the times (fits_in_hbm records it)."}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


@hydra.main(version_base=None, config_path="../conf", config_name="fit")
def main(cfg: DictConfig) -> None:
    def job(run_dir: Path) -> str:
        if cfg.mode not in MODES:
            raise SpecError(f"mode = {cfg.mode!r} is invalid: allowed {', '.join(MODES)}")
        if cfg.precision not in ("float32", "float64"):
            raise SpecError(f"precision = {cfg.precision!r} is invalid: allowed float32, float64")
        jax.config.update("jax_enable_x64", cfg.precision == "float64")
        if cfg.mode == "components":
            return json.dumps(run_components())
        return json.dumps(run_latency(cfg, Path(cfg.out) if cfg.out else run_dir / "fit.nc"))
    run_command(job)


if __name__ == "__main__":
    main()
