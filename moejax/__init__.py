"""moejax: a differentiable, vectorised decode cost model for MoE vs dense LLM inference."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import decode_step, kv_bytes_per_token, param_counts, prefill_step
from .baseline import dense_baseline
from .catalogue import available, load_hardware, load_model
from .cost import StepCosts, decode_point, prefill_point
from .specs import Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload

__all__ = [
    "Accounting", "HardwareSpec", "ModelSpec", "Partition", "SpecError", "StepCosts", "Workload",
    "available", "decode_point", "decode_step", "dense_baseline", "kv_bytes_per_token", "load_hardware",
    "load_model", "param_counts", "prefill_point", "prefill_step",
]
