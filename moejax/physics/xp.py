"""The array namespace the physics runs on, taken from its inputs (the array-API pattern).

Every physics function asks ``namespace(*inputs)`` for its array library instead of importing
``jax.numpy`` directly: JAX arrays and tracers (``jit``, ``vmap``, ``grad``) and Python numbers
give ``jax.numpy``; NumPy arrays with no JAX array among them give ``numpy``. So the benchmark
evaluates the very same kernel code under NumPy (whole-array, un-fused) by passing NumPy arrays,
with no module patched. The kernel uses only functions both libraries spell alike.

>>> import numpy as np, jax.numpy as jnp
>>> namespace(np.ones(2), 1.0) is np, namespace(jnp.ones(2), np.ones(2)) is jnp, namespace(1.0) is jnp
(True, True, True)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def namespace(*inputs):
    """``numpy`` when some leaf of ``inputs`` is a NumPy array and none is a JAX array, else ``jax.numpy``."""
    leaves = jax.tree_util.tree_leaves(inputs)
    if any(isinstance(x, jax.Array) for x in leaves):
        return jnp
    return np if any(isinstance(x, np.ndarray) for x in leaves) else jnp


def trace_once(fn):
    """``fn`` traced once per argument shapes inside a JAX trace, plain elsewhere.

    Called with a tracer among its inputs (under ``jit``/``vmap``/``grad``), ``fn`` runs as
    ``jax.jit(fn)``, so a program that costs the same function at many call sites (the sweep's
    frontier calls the step cost dozens of times) traces it once and reuses the jaxpr. The nested
    ``jit`` is inlined when the program compiles: the same arithmetic, though XLA may fuse it
    differently, so float32 results can move by an ulp. With NumPy or Python inputs (the
    benchmark's NumPy path, host-side checks), or with a Python ``bool`` among them (a static switch
    such as a pattern's prefill flag), ``fn`` runs as written.

    >>> double = trace_once(lambda x: 2 * x)
    >>> float(double(1.5)), float(jax.jit(double)(1.5))
    (3.0, 3.0)
    """
    jitted = jax.jit(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves) and all(
            isinstance(x, jax.Array | np.ndarray | np.generic | int | float) and not isinstance(x, bool) for x in leaves
        ):
            return jitted(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper
