"""sweeps/run.py: the studies run from the CLI and their residual tables hold the rows they claim."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _study(name, run_dir, *extra, out="residuals.md"):
    proc = subprocess.run(
        [sys.executable, "sweeps/run.py", name, "--out", str(run_dir), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (run_dir / out).read_text()
    assert text in proc.stdout  # printed as written
    return text


def _rows(text):
    return [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| source") and not line.startswith("| ---")
    ]


def test_epoch_study(tmp_path):
    text = _study("epoch", tmp_path / "run")
    rows = {r[1]: r for r in _rows(text)}
    assert rows["a (E exponent)"][3] == "0.4375" and rows["a (E exponent)"][6] == "yes"
    assert rows["b (k exponent)"][3] == "0.625"
    assert rows["H100 critical batch (BF16 FLOP/s ÷ HBM B/s)"][6] == "yes"
    assert rows["Llama-3.3-70B TP8 FFN all-reduces at batch 300, 1 MB/token (ms)"][6] == "yes"
    assert rows["GPT-4 serial-depth size"][6] == "no" and rows["GPT-4 serial-depth size"][7]  # reason given
    assert len(rows) == 17  # the fit's 14 rows + critical batch + the all-reduce example twice
    assert (tmp_path / "run" / "fit_components.log").is_file()


def test_fresh_run_dir_required(tmp_path):
    proc = subprocess.run(
        [sys.executable, "sweeps/run.py", "epoch", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "must be fresh" in proc.stderr


def test_qs_paper_study(tmp_path):
    text = _study("qs-paper", tmp_path / "run")
    rows = _rows(text)
    t1 = {r[0].removeprefix("qs Table 1 ") + " " + r[1][:2]: r for r in rows if r[0].startswith("qs Table 1 ")}
    assert len(t1) == 10
    assert t1["Switch-C ρκ"][2] == "0.0015" and t1["Switch-C ρκ"][6] == "yes"
    assert t1["ST-MoE ρκ"][2] == "0.093" and t1["ST-MoE ρκ"][3] == "0.09375" and t1["ST-MoE ρκ"][6] == "no"
    assert "rounded ρ = 0.031" in t1["ST-MoE ρκ"][7]
    for name in ("DeepSpeed-MoE", "GLaM", "GShard"):
        assert t1[f"{name} ρκ"][2] == "not printed (stripped)" and t1[f"{name} ρ "][6] == "yes"
    cal = [r for r in rows if not r[0].startswith("qs Table 1 ")]
    ids = {r[1].split(":")[0] for r in cal}
    assert {"t5.128k.moe.hbm", "t4.tput.dense.128k", "t6.grok1.dense.k2"} <= ids
    assert all(r[6] == "yes" or r[7] for r in cal)  # every miss has a reason
    headline = next(r for r in cal if r[0] == "qs abstract / Table 4")
    assert headline[2] == "4.5" and float(headline[4]) > 0
    assert "## Sweep `python -m moejax.sweep +grid=qs-paper`" in text and (tmp_path / "run" / "sweep.nc").is_file()


def test_qs_point_study(tmp_path):
    """qs-point: every (mode, case) reported, its numbers those of a direct library evaluation."""
    import json

    import numpy as np

    from moejax.catalogue import load_accounting, load_hardware, load_model
    from moejax.physics.cost import decode_point
    from moejax.physics.specs import Partition, Workload

    run = tmp_path / "run"
    text = _study("qs-point", run, out="QS_POINT.md")
    for section in (
        "## Ratio",
        "## dense_tp at the stated partition",
        "## Why: the ratio term by term",
        "## Per-step decomposition",
    ):
        assert section in text
    res = json.loads((run / "qs_point.json").read_text())
    m, hw, wl = (
        load_model("deepseek-v3", weights="fp8", kv="bf16", activations="bf16"),
        load_hardware("qs-reference"),
        Workload(context=131072.0),
    )
    for mode in ("sol", "realistic"):
        r = res["modes"][mode]
        for case in ("stated", "before", "searched"):
            assert f"### {mode}, " in text and f"ratio {r[case]['ratio']:.3f}" in text
            assert r[case]["ratio"] == r[case]["dense"]["throughput_per_gpu"] / r[case]["moe"]["throughput_per_gpu"]
            for name in ("moe", "dense"):
                row = r[case][name]
                assert row["feasible"] and np.isclose(row["phase_sum_ms"], row["step_ms"], rtol=1e-9)
                assert row["step_ms"] * 1e-3 * row["throughput_per_gpu"] * row["gpus_per_replica"] == pytest.approx(row["batch"])
        for name in ("moe", "dense"):  # dense_tp of the stated row: the best of {1, 2, 4, 8}; the search can only do better
            sens = r["sensitivity"][name]
            assert r["stated"][name]["throughput_per_gpu"] == max(sens.values())
            assert r["stated"][name]["partition"]["dense_tp"] == float(max(sens, key=sens.get))
            assert r["searched"][name]["throughput_per_gpu"] >= r["stated"][name]["throughput_per_gpu"]
            assert r["before"][name]["partition"]["dense_tp"] == 64.0
        # one row against decode_point directly: the MoE at the stated partition
        row = r["stated"]["moe"]
        direct = decode_point(m, hw, Partition(**row["partition"]), wl, load_accounting(mode))
        assert float(direct.step_time) * 1e3 == pytest.approx(row["step_ms"], rel=1e-9)
        assert float(direct.batch) == row["batch"] and float(direct.t_comm_exposed) * 1e3 == pytest.approx(
            row["t_comm_exposed_ms"]
        )
        assert row["partition"] == {
            "tp": 8.0,
            "ep": 8.0,
            "pp": 1.0,
            "dp": 1.0,
            "dp_attn": 1.0,
            "kvp": 8.0,
            "kv_mode": 1.0,
            "dense_tp": row["partition"]["dense_tp"],
        }


def test_peers_study(tmp_path):
    """peers: all 38 cases of cases.md reported (none dropped), statistics recomputable from the CSV,
    one case equal to a direct library evaluation, and the validate summaries attached."""
    import csv
    import json
    import math

    import numpy as np

    from moejax.catalogue import load_accounting, load_hardware, load_model
    from moejax.physics.cost import decode_point
    from moejax.physics.specs import Partition, Workload

    run = tmp_path / "run"
    text = _study("peers", run, out="RESULTS.md")
    for section in (
        "## Agreement",
        "## `python -m moejax.validate` on `aic-silicon.yaml`",
        "## Per case",
        "## moejax infeasible cases",
    ):
        assert section in text
    with open(run / "peers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 38 and len({r["id"] for r in rows}) == 38
    assert {r["model"] for r in rows} == {"llama-3-70b", "mixtral-8x22b", "deepseek-v3"}
    for r in rows:  # every case has a moejax latency, or a reason it has none
        for mode in ("sol", "realistic"):
            assert math.isfinite(float(r[f"moejax_{mode}_ms"])) or r["not_expressible"]
            assert (r[f"moejax_{mode}_feasible"] == "True") == (r[f"moejax_{mode}_why"] == "")
    case = next(r for r in rows if r["id"] == "llama-3-70b-h100-sxmx8-tp8-b1-ctx1024")
    assert float(case["aic_sol_ms"]) == 5.22 and case["genz_flag"] == ""
    m, hw = load_model("llama-3-70b", weights="bf16", kv="bf16", gemm="bf16", activations="bf16"), load_hardware("h100-sxm")
    for mode in ("sol", "realistic"):
        steps = [
            decode_point(m, hw, Partition(tp=8.0, dense_tp=float(d)), Workload(context=1024.0, batch=1.0), load_accounting(mode))
            for d in (1, 2, 4, 0)
        ]
        best = min(float(s.step_time) for s in steps if bool(s.feasible))
        assert float(case[f"moejax_{mode}_ms"]) == pytest.approx(best * 1e3, rel=1e-9)
    oom = next(r for r in rows if r["id"] == "llama-3-70b-h100-sxmx8-tp8-b300-ctx131072")
    assert oom["aic_silicon_flag"] == "*" and oom["moejax_sol_feasible"] == "False" and "B_max" in oom["moejax_sol_why"]
    record = json.loads((run / "peers.json").read_text())
    stat = next(s for s in record["stats"] if (s["mode"], s["peer"], s["subset"]) == ("sol", "aic_sol", "all"))
    logs = [abs(math.log(float(r["moejax_sol_ms"]) / float(r["aic_sol_ms"]))) for r in rows if r["aic_sol_ms"]]
    assert stat["n"] == len(logs) and stat["median"] == pytest.approx(float(np.median(logs)))
    assert f"| sol | AIC SOL | all | {stat['n']} | {stat['median']:.3f} |" in text
    for mode in ("sol", "realistic"):
        assert record["validate"][mode]["n"] == 26 and (run / f"validate_aic_{mode}.log").is_file()


def test_modern_study_pieces(tmp_path):
    """The modern study's counterfactual models, KV table and conclusion (the sweep itself is
    ``python sweeps/run.py modern``, ~40 s; its output is committed as sweeps/modern/RESULTS.md)."""
    sys.path.insert(0, str(REPO / "sweeps"))
    from studies import modern

    paths = modern.write_counterfactuals(tmp_path)
    rows = {r[0]: r for r in modern.kv_rows(paths)}
    assert rows["gpt-oss-120b"][1] == "36,864" and rows["gpt-oss-120b-all-full"][1] == "73,728"
    assert rows["gpt-oss-120b-all-sliding"][-1] == "1.0×" and rows["qwen3-next-80b-a3b"][1] == "24,576"
    ratios = {
        (m, hw, n, L): {1.0: 1.2, 2.0: 1.1, 5.0: 0.9 if L == 8192 else 1.1}
        for m in modern.MODELS
        for hw, n in modern.SYSTEMS
        for L in (8192, 32768, 131072)
    }
    kv = {m: {8192: 1.0, 131072: 16.0} for m in modern.MODELS}
    text = "\n".join(modern.conclusion(ratios, {}, kv))
    assert "holds on 6 of 9 feasible points" in text and "higher at 128k than at 8k for 8 of 8" in text
