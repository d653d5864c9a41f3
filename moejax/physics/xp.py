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


def static_equals(x, value) -> bool:
    """True when ``x`` is a plain Python number equal to ``value``: a term it scales or divides can be
    dropped at trace time (an Accounting default such as ``tau_gemm = 0.0`` or an efficiency of 1.0),
    so a preset that does not use a term pays nothing for it. Arrays and tracers are never static.

    >>> static_equals(0.0, 0), static_equals(1, 1.0), static_equals(np.float64(0.0), 0), static_equals(True, 1)
    (True, True, False, False)
    """
    return type(x) in (int, float) and x == value


CACHE_ENTRIES = 256  # jitted variants trace_once keeps per function (static leaves differ between them)


def staging() -> bool:
    """True when the current JAX trace is being staged into a program (``jit``, or a transform
    under it), False under eager transforms only (a ``vmap`` or ``grad`` outside any ``jit``, whose
    operations run one by one). Reads JAX's trace context (private): where that is missing,
    True, so ``trace_once`` keeps its nested ``jit``.

    >>> staging(), jax.jit(lambda x: x + staging())(0.0).item(), jax.vmap(lambda x: x + staging())(jnp.zeros(1)).item()
    (False, 1.0, 0.0)
    """
    try:
        from jax._src import core

        trace = core.trace_ctx.trace
        while trace is not None:
            if type(trace).__name__ == "DynamicJaxprTrace":
                return True
            trace = getattr(trace, "parent_trace", None)  # EvalTrace, the bottom, has none
        return False
    except AttributeError:
        return True


def trace_once(fn):
    """``fn`` traced once per argument shapes inside a JAX trace, plain elsewhere.

    Called with a tracer among its inputs (under ``jit``/``vmap``/``grad``), ``fn`` runs as a nested
    ``jax.jit``, so a program that costs the same function at many call sites (the sweep's frontier
    calls the step cost dozens of times) traces it once per argument shapes and reuses the jaxpr.
    Python scalars and other non-array leaves (``0.0`` defaults, a pattern's ``prefill`` flag) stay
    static, exactly as ``fn`` sees them when called plainly: they key the cache instead of being
    traced. The nested ``jit`` is inlined when the program compiles: the same arithmetic, though XLA
    may fuse it differently, so float32 results can move by an ulp. Each distinct set of static values
    is its own program: the newest ``CACHE_ENTRIES`` are kept. With no tracer among the inputs
    (NumPy or Python values: the benchmark's NumPy path, host-side checks), or under eager
    transforms only (``vmap`` outside any ``jit``: ``staging()`` is False), ``fn`` runs as written:
    eagerly its operations run one by one from executables shared by every call of equal shapes,
    where a nested ``jit`` would compile one program per set of static values.

    >>> double = trace_once(lambda x, k=2: k * x)
    >>> float(double(1.5)), float(jax.jit(double)(1.5)), float(jax.jit(lambda x: double(x, k=3))(1.5))
    (3.0, 3.0, 4.5)
    """
    compiled = {}  # (tree structure, static leaves) -> jitted function of the array leaves, newest last

    def is_array(x):
        return isinstance(x, jax.Array | np.ndarray | np.generic)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        if not any(isinstance(x, jax.core.Tracer) for x in leaves) or not staging():
            return fn(*args, **kwargs)
        static = tuple((i, type(x), x) for i, x in enumerate(leaves) if not is_array(x))
        key = (tree, static)
        try:
            jitted = compiled.get(key)
        except TypeError:  # an unhashable static leaf: no cache
            return fn(*args, **kwargs)
        if jitted is None:

            def call(*arrays):
                fixed, rest = {i: x for i, _, x in static}, iter(arrays)
                full = [fixed[i] if i in fixed else next(rest) for i in range(len(leaves))]
                a, kw = jax.tree_util.tree_unflatten(tree, full)
                return fn(*a, **kw)

            jitted = compiled[key] = jax.jit(call)
            if len(compiled) > CACHE_ENTRIES:  # Python numbers that change call to call (a loop over
                del compiled[next(iter(compiled))]  # scalar specs) would otherwise grow it without bound
        return jitted(*(x for x in leaves if is_array(x)))

    wrapper.variants = compiled  # the jitted variants kept (read by tests)
    return wrapper
