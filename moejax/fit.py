"""Epoch-style dense-equivalent fit: ``python -m moejax.fit mode=components`` or ``mode=latency``.

``components``: the post's argument (docs/epoch-derivation.md) — component power laws, exact
``a = 7/16``, ``b = 5/8``, the same by least squares, and the residual table against the post.
``latency``: for a design set of MoEs and each named regime (conf/fit.yaml), the dense size
with the same step time (moejax cost model, implicit root), fitted to ``P_eq = c·P·k^b/E^a``;
writes a netCDF dataset (designs × regimes) to ``out`` (default ``fit.nc`` in the run dir).

Both end with one JSON line. Bad input: one ``error: ...`` line on stderr, exit code 2, no file.
Library: ``moejax.analysis.epoch``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from .analysis import epoch
from .catalogue import CONF_DIR
from .cli import one_line_errors, path_value, run_command
from .physics.specs import SpecError

MODES = ("components", "latency")


def run_components() -> dict:
    """Print the derivation summary and residual table; return the JSON record."""
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
    return {
        "mode": "components",
        "a": float(a),
        "b": float(b),
        "a_exact": str(a),
        "b_exact": str(b),
        "a_lstsq": fit["a"],
        "b_lstsq": fit["b"],
        "c_lstsq": fit["c"],
        "residuals": [{k: r[k] for k in ("quantity", "reference", "moejax", "rel_residual")} for r in rows],
    }


def run_latency(cfg: DictConfig, out: Path) -> dict:
    """Solve, fit, print per regime, write the dataset atomically; return the JSON record. The
    command boundary: the analysis gets the config's plain values, never the ``DictConfig``."""
    values = OmegaConf.to_container(cfg, resolve=True)
    plan = epoch.plan_latency(values)
    results = epoch.latency_fits(plan, cfg.family)
    print(f"dense family {cfg.family} (anchor {cfg.anchor}), {cfg.accelerator}, {len(plan['total'])} MoE designs")
    record = {}
    for reg, res in zip(plan["regimes"], results):
        f, o = res.fit, res.fit_optax
        wl, p = reg.workload, reg.partition
        print(
            f"{reg.name:<13} ({reg.phase}, batch {float(wl.batch):g}, context {float(wl.context):g}, tp {float(p.tp):g}, "
            f"ep ≤ {float(p.ep):g}): P_eq = {f['c']:.4g} · P_total · k^{f['b']:.4f} / E^{f['a']:.4f}   "
            f"R² = {f['r2']:.4f}, se(a) = {f['se_a']:.4f}, se(b) = {f['se_b']:.4f}; "
            f"optax lbfgs a = {o['a']:.6f}, b = {o['b']:.6f}, c = {o['c']:.6f}; "
            f"fits in HBM {int(res.feasible.sum())}/{len(res.feasible)}"
        )
        record[reg.name] = {
            "a": f["a"],
            "b": f["b"],
            "c": f["c"],
            "r2": f["r2"],
            "se_a": f["se_a"],
            "se_b": f["se_b"],
            "a_optax": o["a"],
            "b_optax": o["b"],
            "c_optax": o["c"],
        }
    epoch.write_dataset(out, values, plan, results, OmegaConf.to_yaml(cfg, resolve=True))
    print(f"wrote {out}")
    return {"mode": "latency", "regimes": record}


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="fit")
def main(cfg: DictConfig) -> None:
    def job(run_dir: Path) -> str:
        if cfg.mode not in MODES:
            raise SpecError(f"mode = {cfg.mode!r} is invalid: allowed {', '.join(MODES)}")
        if cfg.precision not in ("float32", "float64"):
            raise SpecError(f"precision = {cfg.precision!r} is invalid: allowed float32, float64")
        jax.config.update("jax_enable_x64", cfg.precision == "float64")
        if cfg.mode == "components":
            return json.dumps(run_components())
        from .engine.dataset import check_output  # here: xarray's import is only for latency mode

        out = path_value("out", cfg.out) or run_dir / "fit.nc"
        check_output(out, overwrite=True)  # before computing; an existing file is replaced, as before
        return json.dumps(run_latency(cfg, out))

    run_command(job)


if __name__ == "__main__":
    main()
