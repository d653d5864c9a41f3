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

import jax
import jax.numpy as jnp
import numpy as np


def namespace(*inputs):
    """``numpy`` when some leaf of ``inputs`` is a NumPy array and none is a JAX array, else ``jax.numpy``."""
    leaves = jax.tree_util.tree_leaves(inputs)
    if any(isinstance(x, jax.Array) for x in leaves):
        return jnp
    return np if any(isinstance(x, np.ndarray) for x in leaves) else jnp
