"""Tests run in float64 so the kernel can be held to 1e-6 relative against the Python oracle.

Compiled programs persist across tests, test files, xdist workers and runs: one JAX compilation
cache, every compile kept (no minimum compile time), exported to the environment so the
``python -m moejax.*`` subprocesses the tests start use it too (a command's own
``compilation_cache=`` setting, when not null, still wins). It lives outside the clone, in the
user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``moejax/jax-tests``), so that a
fresh clone on a machine that ran the suite before (CI's runner, a developer's second clone) starts
warm; ``MOEJAX_TEST_JAX_CACHE`` names another directory. JAX keys every entry by the program, the
jax/jaxlib versions and the compile options, so a stale entry is never used; the directory is
bounded (least recently used entries evicted above ``CACHE_BYTES``). Where the user's cache
directory is not writable, pytest's own (``.pytest_cache/d/jax``) serves."""

import os
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)


CACHE_BYTES = 4 * 2**30  # a whole suite's programs take about 1 GB


def _cache_dir(config) -> Path:
    named = os.environ.get("MOEJAX_TEST_JAX_CACHE")
    path = Path(named) if named else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moejax" / "jax-tests"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    cache = getattr(config, "cache", None)
    path = cache.mkdir("jax") if cache is not None else Path(tempfile.gettempdir()) / "moejax-test-jax-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_configure(config):
    path = _cache_dir(config)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(CACHE_BYTES)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: hand out files in collection order (SLOWEST_FIRST)
        config.option.loadscopereorder = False


# The costliest test files first (seconds of one worker, summed over the file's tests, in a
# whole-suite run on 2 quiet cores before this list, 2026-12-07; test_bad_input, test_bench and
# test_reference have since dropped to 62, 49-71 and 22-41 s). ``--dist loadfile`` hands out whole
# files as workers free up, and pytest-xdist would otherwise order them by test count, so a long
# file with few tests (the benchmark, κ*) could start last while the other worker idles:
# longest-processing-time-first. With this order the suite took 11 min 07 s; re-sorted by a later
# profile, 13 min 59 s (this machine varies by 10-20 % from run to run, so not a proven loss, but no
# gain). A file not listed keeps its place after these; a stale list only costs balance, never a test.
SLOWEST_FIRST = (
    "tests/test_breakeven.py",  # 158
    "tests/test_serving_sweep.py",  # 123
    "tests/test_fuzz.py",  # 116
    "tests/test_validate.py",  # 104
    "tests/test_robust_runs.py",  # 86
    "tests/test_bad_input.py",  # 84
    "tests/test_calibrate.py",  # 80
    "tests/test_sweep.py",  # 78
    "tests/test_epoch.py",  # 74
    "tests/test_point.py",  # 67
    "tests/test_scale.py",  # 66
    "tests/test_frontier.py",  # 65
    "tests/test_plot.py",  # 63
    "tests/test_studies.py",  # 61
    "tests/test_bench.py",  # 49
    "tests/test_sensitivities.py",  # 39
    "tests/test_frontier_breakeven.py",  # 38
    "tests/test_random_overrides.py",  # 37
    "tests/test_properties.py",  # 25
    "tests/test_silicon.py",  # 24
    "tests/test_launch.py",  # 23
    "tests/test_reference.py",  # 22
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
