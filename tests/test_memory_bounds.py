"""Memory is bounded before it grows (issue 20): the inputs that used to allocate gigabytes before
any check are refused in one line with the process's peak resident memory under 1 GB, and
``keep_partitions`` assembly does not grow with the number of contexts. Each case is a fresh
``python -m`` process (``tests/peak_rss.py`` reports its peak RSS, Linux ``VmHWM``).

Measured before the fixes (the issue's trial): ``grid.interactivity.count=300000000`` 3 GB in 13 s;
ten multipliers on seven ``grid.hardware_space`` fields 3 GB after 312 s; a 1 KB YAML alias bomb
past 2 GB; ``keep_partitions`` 2.5 / 3.6 / 5.6 GB for 1 / 3 / 6 contexts; a 60×60×60
``grid.hardware_space`` still planning after 11 min at 1.7 GB (one accelerator spec at a time). On
2026-12-07 (2-core CPU): each refusal 0.23 GB in about 4 s, ``keep_partitions`` 0.46 GB for 1 and
for 6 contexts; the 60×60×60 space planned and refused by its size (2.05 GB of dataset against a
1 GB limit) in 6 s at 0.75 GB."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cli_runs import ROOT, _env
from test_bad_input import ALIAS_BOMB

GB = 1e9
FIELDS = ("hbm_bw", "hbm_bytes", "flops", "intra_bw", "inter_bw", "intra_latency", "inter_latency")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="peak RSS is read as Linux reports it (kB)")


def _space(n: int, fields) -> list[str]:
    """``n`` multipliers on each of ``fields`` of ``grid.hardware_space``."""
    return [f"grid.hardware_space.{f}=[{','.join(str(1 + i / n) for i in range(n))}]" for f in fields]


def peak(tmp_path: Path, module: str, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """``python -m module args`` in a fresh process run from ``tmp_path``: (the process, its peak RSS
    in bytes); stderr without the report line."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "peak_rss.py"), module, *args],
        cwd=tmp_path,
        env=_env(None),  # as every command the tests start: the clone first on the path, CPU only
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = re.search(r"\npeak_rss_bytes=(\d+)\n$", proc.stderr)
    assert found, proc.stderr[-2000:]
    proc.stderr = proc.stderr[: found.start()]
    return proc, int(found.group(1))


@pytest.mark.parametrize(
    "module,args,fragment",
    [
        ("moejax.sweep", ["+grid=quick", "grid.interactivity.count=300000000"], "grid.interactivity.count = 300000000"),
        ("moejax.sweep", ["+grid=quick", *_space(10, FIELDS)], "(2e+07 accelerators) is invalid"),
        ("moejax.validate", ["measurements={tmp}/bomb.yaml", "out=v"], "node count = more than 1000000"),
        (  # 216,000 accelerators: planned array-wise in seconds, then refused by the exact size estimate
            "moejax.sweep",
            ["+grid=quick", *_space(60, FIELDS[:3]), "max_output_bytes=1e9"],
            "its dataset would take about 2.05 GB",
        ),
    ],
    ids=["interactivity", "hardware-space-10x7", "yaml-alias-bomb", "hardware-space-60x60x60"],
)
def test_refused_in_one_line_under_a_gigabyte(module, args, fragment, tmp_path):
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    args = [a.format(tmp=tmp_path) for a in args]  # validate reads a relative path from the repository root
    proc, rss = peak(tmp_path, module, *args, *(["out=x.nc"] if module == "moejax.sweep" else []))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert fragment in lines[0], lines[0]
    assert rss < GB, f"peak RSS {rss / GB:.2f} GB before the refusal"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["bomb.yaml"]  # no dataset, part or log


def test_keep_partitions_assembly_does_not_grow_with_contexts(tmp_path):
    """Every candidate partition kept (the quick grid: 414 on 16 GPUs) for 1 and for 6 contexts:
    the assembly works one chunk at a time, so the peak stays put and under 1 GB."""
    peaks = []
    with tempfile.TemporaryDirectory() as cache:  # both runs compile alike: no warm cache for the second
        for contexts in ("[8192]", "[1024,4096,16384,65536,262144,1048576]"):
            run = tmp_path / str(len(peaks))
            run.mkdir()
            proc, rss = peak(
                run,
                "moejax.sweep",
                "+grid=quick",
                "keep_partitions=true",
                f"grid.contexts={contexts}",
                "summary=false",
                f"compilation_cache={cache}/{len(peaks)}",
                "out=x.nc",
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            peaks.append(rss)
    assert peaks[1] < GB and peaks[1] <= 1.15 * peaks[0], [f"{p / GB:.2f} GB" for p in peaks]
