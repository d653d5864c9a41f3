"""The shell every moejax command shares: quiet JAX notices, optional persistent compilation cache,
and bad input as one line on stderr with exit code 2 and no run directory left behind."""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .catalogue import CONF_DIR
from .engine import distributed
from .engine.dataset import check_output
from .physics.specs import SpecError


def remove_if_empty(run_dir: Path) -> None:
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _terminate(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so temporary files are removed and parts kept on the way out."""
    raise KeyboardInterrupt


def run_command(job: Callable[[Path], str], compilation_cache=None) -> None:
    """Run ``job(run_dir) -> report`` inside a Hydra task and print its report; a ``SpecError``
    becomes ``error: ...`` on stderr and exit code 2; Ctrl-C or SIGTERM becomes ``interrupted: ...``
    and exit code 130. An empty run directory is removed."""
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "no TPU/GPU backend" notices
    if compilation_cache:  # compiled kernels persist across runs (the κ* kernel takes ~20 s to compile)
        jax.config.update("jax_compilation_cache_dir", str(Path(compilation_cache).expanduser()))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            report = job(run_dir)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        remove_if_empty(run_dir)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        remove_if_empty(run_dir)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    remove_if_empty(run_dir)
    print(report)


def _resolve_overrides(cfg: DictConfig) -> None:
    """``model=NAME`` / ``hardware=NAME`` (Hydra groups over the catalogue) replace the grid's lists."""
    choices = HydraConfig.get().runtime.choices
    for group, field in (("model", "models"), ("hardware", "hardware")):
        if choices.get(group):
            cfg.grid[field] = [choices[group]]


def grid_job(cfg: DictConfig, filename: str, job) -> None:
    """The shell every grid CLI shares: require a grid, apply ``model=``/``hardware=`` choices,
    run ``job(cfg, out) -> report``, and turn a ``SpecError`` into one line on stderr, exit code 2,
    and no files left behind."""
    def grid_run(run_dir: Path) -> str:
        if cfg.grid is None:
            grids = sorted(p.stem for p in (CONF_DIR / "grid").glob("*.yaml"))
            raise SpecError(f"grid is missing: choose one with +grid=NAME, available {', '.join(grids)}")
        _resolve_overrides(cfg)
        if cfg.distributed is not None:
            distributed.initialize(cfg.distributed)  # must precede every other use of JAX
        out = Path(cfg.out) if cfg.out else run_dir / filename
        if cfg.out and HydraConfig.get().mode == RunMode.MULTIRUN:  # each job its own file: NAME-<job>.nc
            out = out.with_name(f"{out.stem}-{HydraConfig.get().job.num}{out.suffix}")
        check_output(out, bool(cfg.get("overwrite", False)))  # before computing
        return job(cfg, out)
    run_command(grid_run, cfg.compilation_cache)
