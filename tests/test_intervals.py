"""80 % prediction intervals of serving predictions (``moejax.analysis.validation.intervals``): the
interval holds its central value, an unseen hardware family or backend widens it, the nested
coverage count of a worked example, and the JSON contract of ``python -m moejax.validate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runs import run_main

from moejax.analysis.validation import intervals

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "data" / "silicon-small.csv"


def _bands(table: dict):
    """Every band stored in a table."""
    for key in ("cells",):
        for fams in table[key].values():
            yield from fams.values()
    for key in ("backends", "families", "new_system", "new_backend"):
        yield from (b for b in table[key].values() if b is not None)
    yield table["all"]


def _contains(outer: dict, inner: dict) -> bool:
    return all(outer[k][0] <= inner[k][0] and inner[k][1] <= outer[k][1] for k in intervals.FIGURES)


def test_band_holds_the_central_value_even_when_residuals_are_one_sided():
    """Residuals all > 0 (the model over-predicts): the measured value lies below the central
    value, and the interval [p·lo, p·hi] is clamped to keep p inside (hi = 1)."""
    r = np.stack([np.linspace(0.1, 0.5, 41), -np.linspace(0.1, 0.5, 41)], axis=1)
    b = intervals.band(r)
    assert b["tpot"][0] == pytest.approx(np.exp(-np.quantile(r[:, 0], 0.9))) and b["tpot"][1] == 1.0
    assert b["ttft"][0] == 1.0 and b["ttft"][1] == pytest.approx(np.exp(-np.quantile(r[:, 1], 0.1)))


def test_coverage_worked_example():
    """Two backends on one system; every grouping's residuals equal (so the table is easy to read).
    Held out A: the interval comes from B's residuals -0.5, -0.4, ..., 0.5 only: 10th/90th
    percentiles -0.4 and 0.4, so A's measurement is inside when -0.4 <= r <= 0.4: 7 of A's 10 finite
    residuals (-0.3, -0.1, 0, 0.1, 0.2, 0.3, 0.35; not -0.9, -0.5, 0.6). Held out B: A's finite
    residuals give the percentiles -0.9 + 0.9·0.4 = -0.54 and 0.35 + 0.1·0.25 = 0.375 (linear
    interpolation), so 9 of B's 11 (-0.5 ... 0.3; not 0.4, 0.5) are inside."""
    a = [-0.9, -0.5, -0.3, -0.1, 0.0, 0.1, 0.2, 0.3, 0.35, 0.6, np.nan]
    b = list(np.round(np.linspace(-0.5, 0.5, 11), 10))
    r = np.array(a + b)
    res = np.stack([r, -r], axis=1)  # TTFT mirrored: the same counts
    backend = ["A"] * len(a) + ["B"] * len(b)
    cv = {g: res for g in ("model", "system", "backend")}
    labels = {"backend": np.array(backend), "model": np.arange(len(r)).astype(str)}  # a model per row: plain bands
    rows = intervals.coverage(backend, ["h200"] * len(r), labels, cv)
    got = {row["value"]: row for row in rows if row["grouping"] == "backend"}
    assert (got["A"]["n_tpot"], got["A"]["in_tpot"], got["A"]["n_ttft"], got["A"]["in_ttft"]) == (10, 7, 10, 7)
    assert (got["B"]["n_tpot"], got["B"]["in_tpot"], got["B"]["n_ttft"], got["B"]["in_ttft"]) == (11, 9, 11, 9)
    assert got["A"]["tpot"] == pytest.approx(0.7) and intervals.pooled(rows)["backend"]["tpot"] == pytest.approx(16 / 21)


def test_pair_effects_and_the_random_effects_band_worked_example():
    """The docstrings' example: pair A's residuals 0.0, 0.1, 0.2, pair B's 1.0 three times. A cell of
    A's rows gets the percentiles of the sums of A's deviations and both pairs' effects (0.05, 1.05):
    [exp(-1.05), 1] = [0.350, 1], where A's own residuals give [exp(-0.18), 1] = [0.835, 1]."""
    r = np.array([0.0, 0.1, 0.2, 1.0, 1.0, 1.0])
    res = np.stack([r, r], axis=1)
    u, dev = intervals.pair_effects(res, np.array(["A"] * 3 + ["B"] * 3))
    assert u[:, 0] == pytest.approx([0.1, 1.0]) and dev[:, 0] == pytest.approx([-0.1, 0, 0.1, 0, 0, 0], abs=1e-12)
    cell = intervals.effects_band(dev[:3], u)
    assert cell["n"] == 3 and cell["tpot"] == pytest.approx([np.exp(-1.05), 1.0], rel=1e-3)
    assert cell["tpot"][0] == pytest.approx(0.350, abs=5e-4)
    assert intervals.band(res[:3])["tpot"] == pytest.approx([np.exp(-0.18), 1.0]) and np.exp(-0.18) == pytest.approx(
        0.835, abs=5e-4
    )
    # one row per pair, or one pair: the plain band
    one_each = np.stack([np.linspace(-0.5, 0.5, 11)] * 2, axis=1)
    u, dev = intervals.pair_effects(one_each, np.arange(11).astype(str))
    assert intervals.effects_band(dev, u) == intervals.band(one_each)
    u, dev = intervals.pair_effects(one_each, np.array(["A"] * 11))
    assert intervals.effects_band(dev, u)["ttft"] == pytest.approx(intervals.band(one_each)["ttft"])


def test_a_new_model_is_covered_by_the_spread_of_every_seen_model():
    """m1 and m2 run on vLLM (log biases -0.1 and 0.08), m3 and m4 on TRT-LLM (0.7 and -0.2), rows
    scattered by 0.03. Held out, m1's interval comes from m2's rows (its cell) and every seen pair's
    bias (-0.2 ... 0.7): all of m1's rows lie inside. The plain percentiles of m2's rows (clamped to
    [0, 0.12]) would hold almost none of them. The held-out rows counted per backend sum to the model grouping's counts, and the
    pooled coverage counts each row once."""
    rng = np.random.default_rng(1)
    models = np.repeat(["m1", "m2", "m3", "m4"], 60)
    backend = np.where(np.isin(models, ["m1", "m2"]), "vllm", "trtllm")
    bias = {"m1": -0.1, "m2": 0.08, "m3": 0.7, "m4": -0.2}
    r = np.array([bias[m] for m in models]) + rng.normal(0, 0.03, len(models))
    res = np.stack([r, r], axis=1)
    cv = {g: res for g in ("model", "system", "backend")}
    hardware = np.array(["h200"] * len(models))
    rows = intervals.coverage(backend, hardware, {"model": models, "backend": backend, "system": hardware}, cv)
    held = {r["value"]: r for r in rows if r["grouping"] == "model" and r["per"] is None}
    assert held["m1"]["tpot"] == 1.0 and held["m1"]["ttft"] == 1.0
    plain = intervals.inside(intervals.band(res[models == "m2"]), res[models == "m1"])
    assert plain[:, 0].mean() < 0.05
    per = {r["value"]: r for r in rows if r["grouping"] == "model" and r["per"] == "backend"}
    assert per["vllm"]["n_tpot"] == 120 and per["vllm"]["in_tpot"] == held["m1"]["in_tpot"] + held["m2"]["in_tpot"]
    assert sum(r["in_ttft"] for r in per.values()) == sum(r["in_ttft"] for r in held.values())
    assert intervals.pooled(rows)["model"]["tpot"] == pytest.approx(sum(r["in_tpot"] for r in held.values()) / 240)


def _synthetic_table():
    """A table where the leave-one-system-out and leave-one-backend-out spreads are wider than
    the leave-one-model-out one (as they should be)."""
    rng = np.random.default_rng(0)
    n = 400
    backend = np.array(["trtllm", "vllm"])[rng.integers(0, 2, n)]
    hardware = np.array(["h100-sxm", "h200", "b200"])[rng.integers(0, 3, n)]
    model = np.array(["m1", "m2", "m3", "m4", "m5"])[rng.integers(0, 5, n)]
    cv = {"model": rng.normal(0, 0.2, (n, 2)), "system": rng.normal(0, 0.4, (n, 2)), "backend": rng.normal(0, 0.5, (n, 2))}
    return intervals.calibrate(backend, hardware, model, cv)


def test_unseen_hardware_family_and_backend_widen_the_interval():
    table = _synthetic_table()
    seen, status, reason = intervals.lookup(table, "trtllm", "h200")
    assert status == "calibrated" and reason == "" and seen is table["cells"]["trtllm"]["hopper"]
    amd, status, reason = intervals.lookup(table, "trtllm", "mi300x")
    assert status == "extrapolated" and "hardware family cdna3" in reason
    assert _contains(amd, table["backends"]["trtllm"]) and _contains(amd, table["new_system"]["all"])
    assert amd["tpot"][1] / amd["tpot"][0] > seen["tpot"][1] / seen["tpot"][0]
    new_sys, status, reason = intervals.lookup(table, "trtllm", "b300")  # Blackwell is in the data, B300 is not
    assert status == "extrapolated" and "system b300" in reason and _contains(new_sys, table["cells"]["trtllm"]["blackwell"])
    new_eng, status, reason = intervals.lookup(table, "sglang", "h200")
    assert status == "extrapolated" and "backend sglang" in reason
    assert _contains(new_eng, table["families"]["hopper"]) and _contains(new_eng, table["new_backend"]["hopper"])
    both, status, why = intervals.lookup(table, "sglang", "mi300x")
    assert status == "extrapolated" and "backend sglang" in why and "cdna3" in why
    assert all(_contains(both, table[k]["all"]) for k in ("new_system", "new_backend")) and _contains(both, table["all"])


def test_every_interval_holds_its_central_value():
    """lo <= 1 <= hi for every band of the shipped preset and of the synthetic table, and
    [p·lo, p·hi] holds p on every row ``apply`` gives an interval."""
    tables = [_synthetic_table()]
    shipped = intervals.load("realistic")
    if shipped is not None:
        tables.append(shipped)
    for table in tables:
        for b in _bands(table):
            for k in intervals.FIGURES:
                assert 0 < b[k][0] <= 1.0 <= b[k][1], (k, b)
        backends = ["trtllm", "sglang", "vllm", "unknown"] * 3
        hardware = ["h200"] * 4 + ["b300"] * 4 + ["mi355x"] * 4
        central = {"tpot": np.linspace(0.01, 0.05, 12), "ttft": np.linspace(0.1, 2.0, 12)}
        out = intervals.apply(table, backends, hardware, central)
        for k in intervals.FIGURES:
            assert np.all(out[f"{k}_lo"] <= central[k]) and np.all(central[k] <= out[f"{k}_hi"])
    assert intervals.apply(None, ["trtllm"], ["h200"], {"tpot": [0.01], "ttft": [0.1]})["interval"] == ["none"]


def test_shipped_preset_widens_outside_its_data():
    """conf/accounting/realistic.yaml, as the fit wrote it: MI300X (no CDNA3 row in the fit) is
    flagged and its interval contains its backend's."""
    table = intervals.load("realistic")
    if table is None:
        pytest.skip("conf/accounting/realistic.yaml has no intervals: table (regenerate: python sweeps/run.py silicon)")
    for b in table["backends"]:
        bd, status, reason = intervals.lookup(table, b, "mi300x")
        assert status == "extrapolated" and "cdna3" in reason and _contains(bd, table["backends"][b])


def test_json_contract_on_a_silicon_csv(tmp_path):
    """Every predicted entry has tpot_lo/hi, ttft_lo/hi (s) around its central value, and the flag."""
    out = tmp_path / "out"
    code, stdout, stderr = run_main(  # in this process (cli_runs.run_main)
        "moejax.validate",
        [f"measurements={SMALL}", "accounting=realistic", f"out={out}", "compilation_cache=null"],
        hydra_dir=tmp_path / "hydra",
    )
    assert code == 0, stderr[-2000:]
    record = json.loads(stdout.strip().splitlines()[-1])
    has_table = intervals.load("realistic") is not None
    assert record["predicted"]
    for i, p in record["predicted"].items():
        assert {"tpot_lo", "tpot_hi", "ttft_lo", "ttft_hi", "interval", "interval_reason"} <= set(p), i
        if has_table:
            assert p["interval"] in ("calibrated", "extrapolated"), i
            assert p["tpot_lo"] <= p["tpot"] <= p["tpot_hi"] and p["ttft_lo"] <= p["ttft"] <= p["ttft_hi"], i
    assert "80 % prediction intervals" in stdout
    assert "predicted_tpot_lo" in (out / "serving.csv").read_text().splitlines()[0]


def test_point_prints_the_interval_beside_the_central_values():
    """moejax.point's report with an interval: step time times the TPOT factors, throughputs over
    them (a rate at the same batch), TTFT times the TTFT factors; without one, no interval text."""
    from moejax.analysis.point import PointQuery, explain
    from moejax.catalogue import load_accounting
    from moejax.engine.grid import PartitionSpace
    from moejax.point import interval_of, report

    space = PartitionSpace(tp=(8,), ep=(1,), pp=(1,), dp_attn=(1,), kvp=(1,), dense_tp=(8,))
    q = PointQuery(
        model="mixtral-8x7b",
        hardware="h100-sxm",
        num_gpus=8,
        accounting=load_accounting("realistic"),
        isl=1024.0,
        osl=256.0,
        batches=(1.0, 16.0),
        levels=(10.0,),
        space=space,
    )
    r = explain(q)
    interval = interval_of(_synthetic_table(), "h100-sxm")
    assert interval[1] == "calibrated"
    (t_lo, t_hi), (f_lo, f_hi) = interval[0]["tpot"], interval[0]["ttft"]
    text, b = report(r, q, interval), r["best"]
    tp = b["throughput_per_gpu"]
    assert f"{tp:.1f} (80 %: {tp / t_hi:.1f} – {tp / t_lo:.1f}) tokens/s per GPU" in text
    step = b["step_time"]
    assert f"step {step * 1e3:.3f} ms (80 %: {step * t_lo * 1e3:.3f} ms – {step * t_hi * 1e3:.3f} ms)" in text
    ttft = r["serving"]["aggregated"]["ttft"]
    assert f"{ttft * f_lo * 1e3:.3f} ms – {ttft * f_hi * 1e3:.3f} ms" in text
    assert "80 %" not in report(r, q, None)


def test_measurement_yaml_points_get_intervals_and_a_coverage_count():
    """A measurement YAML evaluated at an accounting with an interval table: decode entries get
    tpot_lo <= tpot <= tpot_hi, prefill entries ttft_lo <= ttft <= ttft_hi, and the coverage count
    is taken on every feasible point; with no table every field is null and nothing is counted."""
    from moejax.analysis import validation as val
    from moejax.catalogue import load_accounting

    entries = val.load_measurements(ROOT / "tests" / "data" / "validate-small.yaml")
    points, _, _ = val.resolve_all(entries, False)
    ev = val.evaluate(points, load_accounting("realistic"))
    table = _synthetic_table()
    fields, (inside, n) = intervals.for_points(table, ev)
    pred = val.summary(len(entries), ev, {}, [])["predicted"]
    assert n == int(np.sum(np.isfinite(ev.log_ratio))) and 0 <= inside <= n
    for p in points:
        e, c = fields[p.measurement.id], pred[p.measurement.id]
        k = "tpot" if p.measurement.phase == "decode" else "ttft"
        if c[k] is not None:
            assert e[f"{k}_lo"] <= c[k] <= e[f"{k}_hi"] and e["interval"] in ("calibrated", "extrapolated")
    none, (_, n_none) = intervals.for_points(None, ev)
    assert n_none == 0 and all(e["interval"] == "none" and e["tpot_lo"] is None for e in none.values())
