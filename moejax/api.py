"""Convenience entry points for one point: names or specs in, validated, jitted kernel out."""

from __future__ import annotations

import jax
import numpy as np

from .catalogue import load_accounting, load_hardware, load_model
from .physics import arch
from .physics.cost import StepCosts, decode_point, prefill_point
from .physics.partition import check_partition
from .physics.specs import Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload

_decode = jax.jit(decode_point)
_prefill = jax.jit(prefill_point)


def _spec(field: str, value, cls, example: str):
    """``value`` when it is a ``cls``; otherwise a one-line ``SpecError`` naming ``field``."""
    if not isinstance(value, cls):
        raise SpecError(f"{field} = {value!r} is invalid: must be a moejax.{cls.__name__}{example}")
    return value


def _specs(model, hardware, partition, accounting) -> tuple[ModelSpec, HardwareSpec]:
    """Names loaded from the catalogue, every argument checked to be its spec type (one line naming
    the argument otherwise, not an AttributeError from inside the kernel)."""
    m = load_model(model) if isinstance(model, str) else _spec("model", model, ModelSpec, " or a catalogue name/path")
    hw = (
        load_hardware(hardware)
        if isinstance(hardware, str)
        else _spec("hardware", hardware, HardwareSpec, " or a catalogue name/path")
    )
    _spec("partition", partition, Partition, ", e.g. moejax.Partition(tp=8)")
    if accounting is not None:
        _spec("accounting", accounting, Accounting, ", e.g. moejax.Accounting() or load_accounting('realistic')")
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


def _concrete(*trees) -> bool:
    """No leaf is a tracer: host-side checks may run (under ``jax.grad``/``jit`` they are skipped)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _num(field: str, x):
    """A concrete number as a Python float (one compiled kernel for ints and floats); a tracer as it
    is; anything else (None, a string, a list) a one-line ``SpecError`` naming ``field``."""
    if isinstance(x, jax.core.Tracer):
        return x
    if isinstance(x, bool) or not isinstance(x, int | float | np.number | np.ndarray | jax.Array) or np.ndim(x):
        raise SpecError(f"{field} = {x!r} is invalid: must be a number")
    return float(x)


def _batch(batch, acc: Accounting, b_max: bool = True) -> float:
    """``batch`` sequences per replica: a number > 0, whole unless ``acc.integer_batch`` is False
    (``b_max``: None, meaning B_max, is allowed and checked by the caller)."""
    if isinstance(batch, jax.core.Tracer):
        return batch
    whole = acc.integer_batch
    ok = isinstance(batch, int | float | np.number) and not isinstance(batch, bool) and np.isfinite(batch) and batch > 0
    if not ok or (whole and float(batch) != int(batch)):
        allowed = ("None (B_max) or " if b_max else "") + ("a whole number >= 1" if whole else "a number > 0")
        raise SpecError(f"batch = {batch!r} is invalid: must be {allowed} of sequences per replica")
    return float(batch)


def decode_step(
    model,
    hardware,
    partition: Partition,
    context: float,
    batch: float | None = None,
    kappa: float = 5.0,
    accounting: Accounting | None = None,
) -> StepCosts:
    """One decode step (``batch=None``: at B_max; otherwise sequences per replica, > 0). Model/hardware
    may be catalogue names; the accounting defaults to the ``realistic`` preset (``moejax.Accounting()``
    is speed of light). Differentiable (``jax.grad``) in any numeric argument or spec field."""
    m, hw = _specs(model, hardware, partition, accounting)
    acc = accounting or load_accounting("realistic")
    if _concrete(m, partition):
        check_partition(m, partition)
    wl = Workload(
        context=_num("context", context), batch=0.0 if batch is None else _batch(batch, acc), kappa=_num("kappa", kappa)
    )
    return _decode(m, hw, partition, wl, acc)


def prefill_step(
    model, hardware, partition: Partition, context: float, batch: float = 1.0, accounting: Accounting | None = None
) -> StepCosts:
    """Prefill of ``batch`` prompts of ``context`` tokens (time to first token); accounting as
    ``decode_step``."""
    m, hw = _specs(model, hardware, partition, accounting)
    acc = accounting or load_accounting("realistic")
    if _concrete(m, partition):
        check_partition(m, partition)
    wl = Workload(context=_num("context", context), batch=_batch(batch, acc, b_max=False))
    return _prefill(m, hw, partition, wl, acc)
