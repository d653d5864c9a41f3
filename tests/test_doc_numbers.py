"""Numbers the docs state, recomputed by the code and compared at the precision they are printed
(issue 20: the Epoch table, the design-space size and "dense 2.3× faster at κ = 5" had gone stale).

Each test parses the number out of the document, so editing the text without the code (or the code
without the text) fails here. Tolerance: half a unit of the last printed digit, plus 1e-9. The Epoch
table is checked in tests/test_epoch.py (test_epoch_latency_table_is_what_fit_prints), which shares
the fit's run and compiled roots with the tests there."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import xarray as xr
from cli_runs import run_main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _printed_tolerance(text: str) -> float:
    """Half a unit of the last digit of ``text`` as printed (``0.945`` -> 5e-4)."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals + 1e-9


@pytest.mark.parametrize(
    "mode,phrase",
    [
        ("sol", r"(\d+\.\d)× faster at speed of light"),
        ("realistic", r"(\d+\.\d)× faster with the default\s+\(realistic\) accounting"),
    ],
)
def test_dense_ratio_at_kappa_5_in_sweeps_doc(mode, phrase, tmp_path):
    """docs/sweeps.md: DeepSeek-V3 in FP8 on 8×B200 at 64k context, κ = 5, the quick grid's
    partitions: the dense baseline's throughput per GPU over the MoE's (``dense_moe_ratio``)."""
    documented = re.search(phrase, (DOCS / "sweeps.md").read_text())
    assert documented, phrase
    out = tmp_path / "k5.nc"
    args = [
        "+grid=quick",
        "grid.models=[deepseek-v3]",
        "grid.hardware=[b200]",
        "grid.num_gpus=[8]",
        "grid.contexts=[65536]",
        "grid.kappas=[5]",
        f"grid.accounting.mode={mode}",
        "summary=false",
        "progress=false",
        "compilation_cache=null",
        f"out={out}",
        f"parts_dir={tmp_path / 'parts'}",
    ]
    code, _, err = run_main("moejax.sweep", args, hydra_dir=tmp_path / "run")
    assert code == 0, err[-2000:]
    with xr.open_dataset(out) as ds:
        assert ds.attrs["accounting_mode"] == mode
        ratio = float(ds.dense_moe_ratio.squeeze())
    assert abs(ratio - float(documented.group(1))) <= _printed_tolerance(documented.group(1)), (mode, ratio)


def test_design_space_size_in_docs_and_grid():
    """``+grid=design-space``'s candidate evaluations, points and partitions as docs/sweeps.md,
    docs/performance.md and the grid file's own comment state them. Points are the grid's product
    (models × 2 variants × accelerators × GPU counts × contexts); partitions are counted by the
    planner on the grid itself (its 4,608 accelerators are built array-wise, in about a second)."""
    from hydra import compose, initialize_config_dir

    from moejax.engine.plan import build_plan
    from moejax.schema import register, sweep_config

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", ["+grid=design-space"])
    g = cfg.grid
    accelerators = len(g.hardware) * math.prod(len(v) for v in g.hardware_space.values() if v is not None)
    points = len(g.models) * 2 * len(g.kappas) * accelerators * len(g.num_gpus) * len(g.contexts)
    plan = build_plan(sweep_config(cfg).grid, False)
    assert plan.inputs.hardware.hbm_bw.shape == (accelerators,)
    partitions = plan.inputs.n_partitions
    evaluations = points * partitions
    sweeps = (DOCS / "sweeps.md").read_text()
    m = re.search(
        r"`\+grid=design-space` is (\d+\.\d+)×10⁹ candidate evaluations \((\d+\.\d+) M points × ([\d,]+) partitions", sweeps
    )
    assert m, "docs/sweeps.md states the design-space size"
    assert abs(float(m.group(1)) * 1e9 - evaluations) <= _printed_tolerance(m.group(1)) * 1e9, evaluations
    assert abs(float(m.group(2)) * 1e6 - points) <= _printed_tolerance(m.group(2)) * 1e6, points
    assert int(m.group(3).replace(",", "")) == partitions
    perf = re.search(r"at (\d+\.\d+)×10⁹ evaluations end to end", (DOCS / "performance.md").read_text())
    assert perf and perf.group(1) == m.group(1)
    comment = re.search(
        r"~(\d+\.\d+)e9 candidate evaluations \((\d+\.\d+)M grid points x (\d+) partitions",
        (ROOT / "conf" / "grid" / "design-space.yaml").read_text(),
    )
    assert comment and comment.group(1) == m.group(1) and int(comment.group(3)) == partitions
