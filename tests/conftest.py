"""Tests run in float64 so the kernel can be held to 1e-6 relative against the Python oracle.

Compiled programs persist across tests, test files, xdist workers and runs: one JAX compilation
cache under pytest's cache directory (``.pytest_cache/d/jax``), every compile kept (no minimum
compile time), exported to the environment so the ``python -m moejax.*`` subprocesses the tests
start use it too (a command's own ``compilation_cache=`` setting, when not null, still wins)."""

import os
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    cache = getattr(config, "cache", None)
    path = cache.mkdir("jax") if cache is not None else Path(tempfile.gettempdir()) / "moejax-test-jax-cache"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
