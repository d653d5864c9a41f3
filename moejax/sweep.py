"""Main job: ``python -m moejax.sweep +grid=frontier``.

Every MoE model of the grid and its κ-matched dense baselines, on every hardware, cluster size
and context, each at its best feasible partition (searched on the device), written as one
labelled netCDF dataset (``sweep.nc`` in the Hydra run directory, or ``out=PATH``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import jax
from omegaconf import DictConfig

from .analysis.frontier import frontier_summary, slo_summary
from .analysis.qs import sweep_columns
from .analysis.summary import summary
from .analysis.validation.sweep_intervals import bounds_counter
from .catalogue import CONF_DIR
from .cli import grid_job, one_line_errors
from .engine.config import SweepConfig
from .engine.dataset import check_writable
from .engine.interrupts import deferred
from .engine.run import run
from .schema import register

register()


def _sweep_job(cfg: SweepConfig, out: Path) -> str:
    check_writable("parts_dir", Path(cfg.parts_dir))  # before computing, as ``out`` (grid_job)
    if run(cfg, out, sweep_columns(cfg), bounds_counter(cfg.grid.accounting)) is None:
        return f"process {jax.process_index()}: parts written; process 0 writes {out}"
    with deferred():  # reads the dataset: a signal stops the run after it
        if not cfg.summary:
            return f"wrote {out}"
        texts = [summary(out)]
        if cfg.grid.batches or cfg.grid.workloads:
            texts += [frontier_summary(out), slo_summary(out)]
        return "\n".join([f"wrote {out}", *(t for t in texts if t)])


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    grid_job(cfg, "sweep.nc", _sweep_job)


if __name__ == "__main__":
    main()
