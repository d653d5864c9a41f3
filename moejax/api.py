"""Convenience entry points for one point: names or specs in, validated, jitted kernel out."""

from __future__ import annotations

import jax

from .catalogue import load_accounting, load_hardware, load_model
from .physics import arch
from .physics.cost import StepCosts, decode_point, prefill_point
from .physics.partition import check_partition
from .physics.specs import Accounting, HardwareSpec, ModelSpec, Partition, Workload

_decode = jax.jit(decode_point)
_prefill = jax.jit(prefill_point)


def _specs(model, hardware) -> tuple[ModelSpec, HardwareSpec]:
    m = load_model(model) if isinstance(model, str) else model
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    return m, hw


def param_counts(model: ModelSpec | str) -> tuple[float, float]:
    """(total, active-per-token) parameters; see ``moejax.physics.arch.param_counts``."""
    m = load_model(model) if isinstance(model, str) else model
    total, active = arch.param_counts(m)
    return float(total), float(active)


def kv_bytes_per_token(model: ModelSpec | str) -> float:
    """KV-cache bytes per token, all layers, at the model's KV dtype, before sharding."""
    m = load_model(model) if isinstance(model, str) else model
    return float(arch.kv_bytes_per_token(m))


def decode_step(model, hardware, partition: Partition, context: float, batch: float | None = None,
                kappa: float = 5.0, accounting: Accounting | None = None) -> StepCosts:
    """One decode step (``batch=None``: at B_max). Model/hardware may be catalogue names; the
    accounting defaults to the ``realistic`` preset (``moejax.Accounting()`` is speed of light)."""
    m, hw = _specs(model, hardware)
    check_partition(m, partition)
    wl = Workload(context=float(context), batch=0.0 if batch is None else float(batch), kappa=float(kappa))
    return _decode(m, hw, partition, wl, accounting or load_accounting("realistic"))


def prefill_step(model, hardware, partition: Partition, context: float, batch: float = 1.0,
                 accounting: Accounting | None = None) -> StepCosts:
    """Prefill of ``batch`` prompts of ``context`` tokens (time to first token); accounting as
    ``decode_step``."""
    m, hw = _specs(model, hardware)
    check_partition(m, partition)
    wl = Workload(context=float(context), batch=float(batch))
    return _prefill(m, hw, partition, wl, accounting or load_accounting("realistic"))
