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
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: hand out files in collection order (SLOWEST_FIRST)
        config.option.loadscopereorder = False


# The costliest test files first, longest first (seconds of one worker, summed over the file's
# tests, in a whole-suite run on 2 quiet cores, 2026-12-07). ``--dist loadfile`` hands out whole
# files as workers free up, and pytest-xdist would otherwise order them by test count, so a long
# file with few tests (the benchmark, κ*) could start last while the other worker idles:
# longest-processing-time-first.
# A file not listed keeps its place after these; a stale list only costs balance, never a test.
SLOWEST_FIRST = (
    "tests/test_serving_sweep.py",  # 133
    "tests/test_fuzz.py",  # 128
    "tests/test_validate.py",  # 119
    "tests/test_breakeven.py",  # 92
    "tests/test_robust_runs.py",  # 86
    "tests/test_scale.py",  # 84
    "tests/test_sweep.py",  # 78
    "tests/test_epoch.py",  # 73
    "tests/test_bench.py",  # 71
    "tests/test_frontier.py",  # 67
    "tests/test_calibrate.py",  # 65
    "tests/test_point.py",  # 62
    "tests/test_bad_input.py",  # 62
    "tests/test_studies.py",  # 58
    "tests/test_plot.py",  # 53
    "tests/test_reference.py",  # 41
    "tests/test_frontier_breakeven.py",  # 39
    "tests/test_random_overrides.py",  # 36
    "tests/test_properties.py",  # 34
    "tests/test_sensitivities.py",  # 33
    "tests/test_launch.py",  # 20
    "tests/test_intervals.py",  # 20
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
