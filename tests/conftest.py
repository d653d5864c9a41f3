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


CACHE_BYTES = 2**30  # a whole suite's programs take about 40 MB (2026-12-07): room for many versions


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
    # JAX opens its cache once, at the first compile: open it here, so that a command run in-process
    # later with its own compilation_cache= setting cannot move a worker's programs elsewhere (it did
    # when such a command ran first in a worker: its programs missed this cache on the next run)
    jax.jit(lambda x: x + 1)(1)
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: hand out files in collection order (SLOWEST_FIRST)
        config.option.loadscopereorder = False


# The costliest test files first (seconds of one worker, summed over the file's tests, in a
# whole-suite run on 2 quiet cores with the compilation cache warm, 2026-12-07: the steady state
# once the cache below is filled; cold, the compile-heavy files weigh more: breakeven 120,
# serving_sweep 96, validate 91). ``--dist loadfile`` hands out whole files as workers free up,
# and pytest-xdist would otherwise order them by test count, so a long file with few tests could
# start last while the other worker idles: longest-processing-time-first. A file not listed keeps
# its place after these; a stale list only costs balance, never a test.
SLOWEST_FIRST = (
    "tests/test_fuzz.py",  # 179
    "tests/test_scale.py",  # 96
    "tests/test_frontier.py",  # 58
    "tests/test_robust_runs.py",  # 53
    "tests/test_disk_full.py",  # 48
    "tests/test_plot.py",  # 41
    "tests/test_studies.py",  # 40
    "tests/test_sweep.py",  # 36
    "tests/test_breakeven.py",  # 33
    "tests/test_bad_input.py",  # 32
    "tests/test_validate.py",  # 30
    "tests/test_serving_sweep.py",  # 28
    "tests/test_bench.py",  # 27
    "tests/test_frontier_breakeven.py",  # 25
    "tests/test_memory_bounds.py",  # 25
    "tests/test_sensitivities.py",  # 24
    "tests/test_properties.py",  # 22
    "tests/test_random_overrides.py",  # 19 (in-process since; 39 as processes)
    "tests/test_calibrate.py",  # 19
    "tests/test_reference.py",  # 18
    "tests/test_epoch.py",  # 16
    "tests/test_interrupts.py",  # 16
    "tests/test_launch.py",  # 14
    "tests/test_summary.py",  # 14
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
