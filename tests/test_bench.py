"""The benchmark runs and its cross-checks hold (timings are reported, never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The benchmark runs with the suite's compilation cache (tests/conftest.py): its compile_s is then mostly
# the cache's load, still > 0; the cold figures are the benchmark command's own (docs/performance.md).


def test_bench_runs_and_its_paths_agree():
    """The streamed main job and the κ* path are skipped here (test_sweep and test_breakeven run them)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.bench",
            "--contexts",
            "1",
            "--repeats",
            "1",
            "--reference-points",
            "100",
            "--numpy-rows",
            "2",
            "--stream-points",
            "0",
            "--breakeven-points",
            "0",
            "--frontier-contexts",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "points_per_s",
        "search_points_per_s",
        "reference_points_per_s",
        "numpy_points_per_s",
        "compile_s",
        "peak_rss_mb",
        "frontier_points_per_s",
        "frontier_peak_rss_mb",
    ):
        assert result[key] > 0, key
    # candidate partitions of the frontier grid (widest table, 128 GPUs): 5306 without redundant slots, 7350 with
    # redundant_experts [0, 16, 32] at most one per EP rank (16 with ep >= 16, 32 with ep >= 32)
    assert result["evaluations"] == result["grid_points"] * 7350
    assert result["numpy_max_rel_diff"] < 1e-5  # float32 kernel vs NumPy running the same code, at equal batch
    assert 0 < result["numpy_evaluations"] < result["evaluations"]  # the first 2 model rows
    assert result["numpy_batch_flips"] < 1e-3 * result["numpy_evaluations"] / 2  # rare float32 floor(B_max) flips
    assert result["reference_max_rel_diff_float32"] < 1e-5 and result["reference_feasible_points"] > 0
