"""moejax: a differentiable, vectorised decode cost model for MoE vs dense LLM inference."""

from __future__ import annotations

from . import _startup  # noqa: F401  (first: a signal while the rest imports is one line)
from .api import decode_step, kv_bytes_per_token, param_counts, prefill_step
from .catalogue import available, dense_baseline, load_hardware, load_model
from .physics.cost import BOUND_MEANINGS, StepCosts, decode_point, prefill_point
from .physics.specs import Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload
from .version import __version__

__all__ = [
    "Accounting",
    "BOUND_MEANINGS",
    "HardwareSpec",
    "ModelSpec",
    "Partition",
    "SpecError",
    "StepCosts",
    "Workload",
    "available",
    "decode_point",
    "decode_step",
    "dense_baseline",
    "kv_bytes_per_token",
    "load_hardware",
    "load_model",
    "param_counts",
    "prefill_point",
    "prefill_step",
    "__version__",
]
