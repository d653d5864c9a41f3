"""sweeps/run.py: the studies run from the CLI and their residual tables hold the rows they claim."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _study(name, run_dir, *extra):
    proc = subprocess.run([sys.executable, "sweeps/run.py", name, "--out", str(run_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (run_dir / "residuals.md").read_text()
    assert text in proc.stdout  # printed as written
    return text


def _rows(text):
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| source") and not line.startswith("| ---")]


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
    proc = subprocess.run([sys.executable, "sweeps/run.py", "epoch", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
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
