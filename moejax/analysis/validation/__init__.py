"""Validation against measured serving results (``python -m moejax.validate``).

- ``measurements``: load and check a measurement YAML (format: moejax/data/reference/serving/README.md);
- ``deploy``: each usable entry as deployed (model with its dtypes, hardware, partition,
  workload), or the one-line reason moejax cannot express it;
- ``evaluate``: every point in one vmapped call per phase, predicted figures and residuals;
- ``report``: the residual table and the one-line JSON summary;
- ``fit``: global accounting constants fitted by optax through the kernel, leave-one-out.
"""

from __future__ import annotations

from .deploy import Point, resolve, resolve_all
from .evaluate import Evaluation, evaluate
from .fit import FitResult, FitSettings, fit, provenance, write_accounting
from .measurements import FIGURES, Measurement, load_measurements
from .report import report, summary, text_table, write_outputs

__all__ = [
    "FIGURES",
    "Evaluation",
    "FitResult",
    "FitSettings",
    "Measurement",
    "Point",
    "evaluate",
    "fit",
    "load_measurements",
    "provenance",
    "report",
    "resolve",
    "resolve_all",
    "summary",
    "text_table",
    "write_accounting",
    "write_outputs",
]
