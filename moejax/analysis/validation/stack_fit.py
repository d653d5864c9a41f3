"""The ROCm stack factor (``Accounting.rocm_factor``): how much longer every kernel and collective of
a step (not the disaggregated KV hand-off) takes on an accelerator that runs AMD's ROCm stack
(``HardwareSpec.stack`` rocm) than the kernel model, calibrated on NVIDIA parts, says. The serving
corpus has no ROCm run; the factor is pinned by the measured points of ``measurements.yaml`` on ROCm
hardware, nothing else.

A point's step is ``f·device + host`` (``cost.microbatch_phases`` scales the device part), so its
prediction is affine in the factor. With ``u`` the predicted step time (or the inverse of a rate
figure, which is proportional to it) at ``f = 1`` and ``f = 2``, the factor that makes the point
exact is ``f_i = 1 + (u_measured - u_1)/(u_2 - u_1)``. The fit is their geometric mean (least
squares on log factors); a point's out-of-sample prediction uses the geometric mean of the
others (leave one out; none with a single point).

Two points, DeepSeek-R1 TP8 on MI300X and MI355X (SGLang, ROCm image), each about 1.55× slower than
the model: ``f_1 = 1.5, f_2 = 1.6`` give ``f = sqrt(1.5·1.6) = 1.549``; the first point is predicted
out of sample at 1.6, the second at 1.5.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np

from ...physics.specs import STACKS, Accounting, SpecError, replace
from .deploy import Point
from .evaluate import evaluate

ROCM = STACKS["rocm"]


@dataclasses.dataclass(frozen=True)
class StackFit:
    """``factor`` (the geometric mean), and per ROCm point id its ``implied`` factor, its
    leave-one-out factor ``loo`` (NaN with a single point) and the figure predicted at it."""

    factor: float
    implied: dict[str, float]
    loo: dict[str, float]
    loo_predicted: dict[str, float]


def rocm_points(points: list[Point]) -> list[Point]:
    """The points whose hardware runs the ROCm stack."""
    return [p for p in points if float(p.hardware.stack) == ROCM]


def _step_like(points: list[Point], figures: np.ndarray) -> np.ndarray:
    """Each figure as a quantity proportional to the step: step time itself, else 1/rate."""
    step = np.array([p.measurement.figure == "step_time" for p in points])
    return np.where(step, figures, 1.0 / figures)


def geometric_mean(values) -> float:
    """``statistics.geometric_mean``, NaN for none (a single point has no leave-one-out factor).

    1.5 and 1.6: sqrt(2.4) = 1.549.
    """
    values = list(values)
    return statistics.geometric_mean(values) if values else math.nan


def fit(points: list[Point], acc: Accounting) -> StackFit | None:
    """The ROCm factor from the feasible ROCm points among ``points`` at ``acc`` (its other
    constants as given); None where there is none."""
    pts = rocm_points(points)
    if not pts:
        return None
    one, two = (evaluate(pts, replace(acc, rocm_factor=f)) for f in (1.0, 2.0))
    ok = one.feasible & two.feasible
    pts = [p for p, k in zip(pts, ok) if k]
    if not pts:
        return None
    u1, u2 = _step_like(pts, one.predicted[ok]), _step_like(pts, two.predicted[ok])
    measured = _step_like(pts, np.array([p.measurement.value for p in pts]))
    implied = {p.measurement.id: float(1 + (m - a) / (b - a)) for p, m, a, b in zip(pts, measured, u1, u2)}
    for i, v in implied.items():
        if not v > 0:
            raise SpecError(
                f"point {i!r}: rocm_factor = {v:.3g} is invalid: must be > 0 (measured faster than its host work alone)"
            )
    loo, predicted = {}, {}
    for p, a, b in zip(pts, u1, u2):
        i = p.measurement.id
        loo[i] = geometric_mean(v for k, v in implied.items() if k != i)
        u = a + (loo[i] - 1) * (b - a)
        predicted[i] = float(u if p.measurement.figure == "step_time" else 1.0 / u)
    return StackFit(geometric_mean(implied.values()), implied, loo, predicted)


def source(sf: StackFit, measurements: str) -> str:
    """The fitted factor's provenance line for ``conf/accounting/realistic.yaml``."""
    each = ", ".join(f"{i} x{v:.3f}" for i, v in sf.implied.items())
    return (
        f"fitted: geometric mean of the factors that make the ROCm points of {measurements} exact ({each}); "
        "moejax.analysis.validation.stack_fit, python sweeps/run.py silicon"
    )
