"""Calibration job: ``python -m moejax.calibrate`` (Hydra config ``conf/calibrate.yaml``).

Fits the named accounting constants of ``moejax.Accounting`` to a paper's published numbers
(default: the qs paper, ``sweeps/qs-paper/reference.yaml``) fit by fit, then prints the fitted
constants, the residual table (published, moejax physical default, moejax calibrated), the
identifiability summary, writes ``residuals.csv`` and ``calibration.nc`` to the run directory (or
``out=DIR``) and ends with one JSON line
``{"constants": {...}, "rms_log_residual": ..., "unidentifiable": [...]}``.
Bad input stops with one line ``error: ...`` on stderr, exit code 2, and no output files.
Library: ``moejax.analysis.calibration``.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import jax
from omegaconf import DictConfig, OmegaConf

from .analysis.calibration import (
    Optimizer,
    calibrate,
    fit_from_config,
    load_reference,
    report,
    summary_json,
    write_outputs,
)
from .catalogue import CONF_DIR
from .cli import one_line_errors, path_value, run_command
from .engine.dataset import check_writable
from .physics.specs import SpecError


def _number(name: str, value, integer: bool = False, low: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (not integer or int(value) == value)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise SpecError(f"{name} = {value!r} is invalid: must be {kind} {'>' if strict else '>='} {low:g}")
    return int(value) if integer else float(value)


def problem_from_config(cfg: DictConfig):
    """(reference, fits, optimizer, rtol) from the composed config; one-line ``SpecError``s."""
    if not isinstance(cfg.get("fits"), DictConfig) or not cfg.fits:
        raise SpecError("fits is invalid: needs at least one named fit (see conf/calibrate.yaml)")
    ref = load_reference(str(cfg.reference))
    fits = []
    for name, node in cfg.fits.items():
        if not isinstance(node, DictConfig):
            raise SpecError(f"fits.{name} = {node!r} is invalid: must be a mapping")
        fits.append(fit_from_config(str(name), OmegaConf.to_container(node, resolve=True)))
    opt = cfg.optimizer
    unknown = sorted(set(opt) - {"adam_steps", "learning_rate", "lbfgs_steps"})
    if unknown:
        raise SpecError(f"optimizer.{unknown[0]} is not a known field: allowed adam_steps, learning_rate, lbfgs_steps")
    optimizer = Optimizer(
        adam_steps=_number("optimizer.adam_steps", opt.adam_steps, integer=True),
        learning_rate=_number("optimizer.learning_rate", opt.learning_rate, strict=True),
        lbfgs_steps=_number("optimizer.lbfgs_steps", opt.lbfgs_steps, integer=True),
    )
    rtol = _number("identifiability_rtol", cfg.identifiability_rtol, strict=True)
    if rtol >= 1:
        raise SpecError(f"identifiability_rtol = {rtol!r} is invalid: must be in (0, 1)")
    return ref, fits, optimizer, rtol


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="calibrate")
def main(cfg: DictConfig) -> None:
    def job(run_dir: Path) -> str:
        jax.config.update("jax_enable_x64", True)
        ref, fits, optimizer, rtol = problem_from_config(cfg)
        out = path_value("out", cfg.out) or run_dir
        check_writable("out", out)  # before computing
        res = calibrate(ref, fits, optimizer, rtol)
        paths = write_outputs(res, out)
        return f"{report(res)}\nwrote {paths[0]}\nwrote {paths[1]}\n{summary_json(res)}"

    run_command(job, cfg.get("compilation_cache"))


if __name__ == "__main__":
    main()
