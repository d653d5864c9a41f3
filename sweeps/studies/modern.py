"""modern study: four 2025 MoEs against their κ-matched dense models on H200 × 8, B200 × 8 and GB200 NVL72.

One sweep (``python -m moejax.sweep +grid=modern``): gpt-oss-120b (half the layers 128-token sliding
window), Kimi-K2 (MLA, full attention), DeepSeek-V3.2 (MLA with DeepSeek Sparse Attention) and
Qwen3-Next-80B-A3B (three of four layers Gated DeltaNet linear attention), each in its released dtypes,
with its keep-attention dense baselines at κ = 1, 2, 5, each point at its best partition and B_max,
8k/32k/128k context. The same sweep carries three counterfactual patterns written into the run
directory: gpt-oss-120b with every layer full attention and with every layer sliding-window, and
Qwen3-Next with every layer full attention (its full-attention shape), to separate what the
attention pattern does from what the MoE does.

The qs inequality is the qs paper's claim that the κ-matched dense model serves more tokens per GPU
than the MoE: it holds where the dense/MoE throughput-per-GPU ratio exceeds 1.

The keep-attention baseline keeps the MoE's attention, and so its pattern: a sliding, sparse or linear
layer stays one in the dense model, and both sides hold the same KV per sequence. The pattern then
moves the comparison only through what the KV leaves of the HBM for the batch (B_max) and through
how much of the step the attention takes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from . import md_table, num

REPO = Path(__file__).resolve().parents[2]
MODELS = ("gpt-oss-120b", "kimi-k2", "deepseek-v3.2", "qwen3-next-80b-a3b")
SYSTEMS = (("h200", 8), ("b200", 8), ("gb200-nvl72", 72))
KAPPAS = (1.0, 2.0, 5.0)
KAPPA = 5.0
COUNTERFACTUALS = {  # name -> (catalogue model, layer_types rewrite, description)
    "gpt-oss-120b-all-full": ("gpt-oss-120b", "full_attention", "gpt-oss-120b, every layer full attention"),
    "gpt-oss-120b-all-sliding": ("gpt-oss-120b", "sliding_attention", "gpt-oss-120b, every layer a 128-token window"),
    "qwen3-next-all-full": ("qwen3-next-80b-a3b", "full_attention", "Qwen3-Next, every layer gated full attention"),
}
BOUNDS = ("compute", "HBM", "comm", "infeasible")


def write_counterfactuals(run_dir: Path) -> dict[str, Path]:
    """YAML copies of catalogue entries with every layer of one kind; ``{name: path}``."""
    from moejax.catalogue import model_entry

    out = {}
    (run_dir / "models").mkdir()
    for name, (base, kind, desc) in COUNTERFACTUALS.items():
        entry = model_entry(base)
        entry.pop("_where")
        entry["description"] = f"counterfactual: {desc} (written by the modern study)"
        a = entry["architecture"]
        a["layer_types"] = [kind] * a["n_layers"]
        path = run_dir / "models" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(entry, sort_keys=False))
        out[name] = path
    return out


def kv_rows(paths: dict[str, Path]) -> list[list]:
    """KV accounted three ways per model: bytes stored per token of context (what grows), the fixed
    bytes per sequence (windows and states), and the total per sequence at 8k, 32k and 128k."""
    import moejax
    from moejax.physics import arch

    rows = []
    for name in (*MODELS, *paths):
        m = moejax.load_model(str(paths.get(name, name)))
        per_token = float(arch.kv_bytes_per_token(m))
        at = {L: float(arch.kv_bytes_per_sequence(m, float(L))) for L in (8192, 32768, 131072)}
        fixed = float(arch.kv_bytes_per_sequence(m, 131072.0)) - 131072 * per_token
        rows.append(
            [
                name,
                num(per_token, "{:,.0f}"),
                num(fixed / 1e6, "{:.1f}"),
                *(num(v / 1e9, "{:.3g}") for v in at.values()),
                num(at[131072] / at[8192], "{:.1f}×"),
            ]
        )
    return rows


def _get(ds, var, **sel):
    return float(ds[var].sel(**sel))


def point_rows(ds, models) -> tuple[list[list], dict]:
    """Per model × system × context: MoE tokens/s/GPU and B (per replica), dense/MoE at κ = 1, 2, 5."""
    rows, ratios = [], {}
    for model in models:
        for hw, n in SYSTEMS:
            for L in ds.context.values:
                at = dict(model=model, hardware=hw, num_gpus=n, context=L)
                moe = _get(ds, "throughput_per_gpu", variant="moe", kappa=KAPPA, **at)
                r = {k: _get(ds, "dense_moe_ratio", kappa=k, **at) for k in KAPPAS}
                ratios[(model, hw, n, int(L))] = r
                bound = BOUNDS[int(ds["bound"].sel(variant="moe", kappa=KAPPA, **at))]
                b = _get(ds, "batch", variant="moe", kappa=KAPPA, **at)
                holds = "—" if math.isnan(r[KAPPA]) else ("yes" if r[KAPPA] > 1 else "no")
                rows.append(
                    [
                        model,
                        f"{hw} × {n}",
                        f"{int(L) // 1024}k",
                        num(moe, "{:,.0f}") if moe > 0 else "infeasible",
                        num(b, "{:,.0f}") if moe > 0 else "—",
                        *(num(r[k], "{:.2f}") for k in KAPPAS),
                        bound,
                        holds,
                    ]
                )
    return rows, ratios


def conclusion(ratios: dict, cf: dict, kv_growth: dict) -> list[str]:
    """The study's conclusion from its numbers: ``ratios[(model, hardware, gpus, context)][kappa]`` (dense/MoE),
    the counterfactual ratios (``counterfactual_ratios``), ``kv_growth[model][context]`` (KV bytes per sequence)."""
    lines = []
    for model in MODELS:
        pts = {k: v[KAPPA] for k, v in ratios.items() if k[0] == model and not math.isnan(v[KAPPA])}
        if not pts:
            lines.append(f"- **{model}**: no feasible MoE/dense pair on these systems.")
            continue
        holds = sorted(k for k, v in pts.items() if v > 1)
        fails = sorted(k for k, v in pts.items() if v <= 1)
        where = lambda ks: ", ".join(f"{hw}×{n} at {L // 1024}k ({pts[(model, hw, n, L)]:.2f})" for _, hw, n, L in ks)  # noqa: E731
        text = f"- **{model}** (κ = {KAPPA:g}): the qs inequality holds on {len(holds)} of {len(pts)} feasible points"
        text += f"; it fails at {where(fails)}." if fails else "."
        lo, hi = min(pts.values()), max(pts.values())
        text += f" Dense/MoE ranges {lo:.2f}–{hi:.2f}."
        lines.append(text)
    lines.append("")
    node = [(m, hw, n) for m in MODELS for hw, n in SYSTEMS if n == 8]
    rise = [(m, hw) for m, hw, n in node if not math.isnan(ratios[(m, hw, n, 8192)][KAPPA] + ratios[(m, hw, n, 131072)][KAPPA])]
    up = [x for x in rise if ratios[(*x, 8, 131072)][KAPPA] > ratios[(*x, 8, 8192)][KAPPA]]
    growth = [kv[131072] / kv[8192] for kv in kv_growth.values()]
    lines.append(
        f"- **Context.** On the 8-GPU nodes the ratio at κ = {KAPPA:g} is higher at 128k than at 8k for {len(up)} of "
        f"{len(rise)} feasible (model, node) pairs: the longer the context, the more of the HBM goes to KV, which is "
        "the same on both sides (keep-attention), so the MoE's larger weights cost it a larger share of B_max, and "
        "its expert reads lose the reuse a large batch gave them. None of the four has attention whose KV stops "
        f"growing: their full (or sparse) layers still store every token (KV per sequence grows {min(growth):.1f}–"
        f"{max(growth):.1f}× from 8k to 128k, table 1); the patterns lower the slope (gpt-oss stores half, Qwen3-Next "
        "a quarter of what a same-shape full-attention model stores per token), they do not flatten it."
    )
    g, q = cf.get("gpt-oss"), cf.get("qwen")
    if g:
        lines.append(
            f"- **Where it stops holding.** With KV that no longer grows (gpt-oss-120b with every layer a "
            f"128-token window) the dense/MoE ratio on B200 × 8 at κ = {KAPPA:g} is {g['sliding'][8]:.2f} at 8k and "
            f"{g['sliding'][128]:.2f} at 128k, against {g['published'][8]:.2f} → {g['published'][128]:.2f} as "
            f"published and {g['full'][8]:.2f} → {g['full'][128]:.2f} with every layer full: the context no longer "
            "moves the answer, B_max stays large on both sides, the MoE's expert reads are amortised over a large "
            "batch and the step turns compute-bound, where the MoE's fewer active FLOPs win. The qs inequality "
            f"stops holding at every context at κ = {KAPPA:g} (at κ = 1 the dense model still wins, "
            f"{g['sliding_kappa1']:.2f}). The published patterns sit between: they help the MoE at short "
            "context (more batch) and change little at 128k, where the full layers' KV dominates."
        )
    if q:
        lines.append(
            f"- Qwen3-Next on B200 × 8 (κ = {KAPPA:g}): {q['published'][8]:.2f} → {q['published'][128]:.2f} "
            f"(8k → 128k) as published, {q['full'][8]:.2f} → {q['full'][128]:.2f} with every layer full attention."
        )
    rack = [ratios[(m, "gb200-nvl72", 72, L)][KAPPA] for m in ("kimi-k2", "deepseek-v3.2") for L in (8192, 32768, 131072)]
    nodes = [
        ratios[(m, hw, 8, L)][KAPPA]
        for m in ("kimi-k2", "deepseek-v3.2")
        for hw in ("h200", "b200")
        for L in (8192, 32768, 131072)
    ]
    nodes = [x for x in nodes if not math.isnan(x)]
    if rack and nodes:
        lines.append(
            f"- **Rack scale.** On a GB200 NVL72 the trillion-parameter-class MLA models spread their experts over "
            f"72 GPUs of one NVLink domain and the MoE's B_max grows with them: dense/MoE at κ = {KAPPA:g} is "
            f"{min(rack):.2f}–{max(rack):.2f} there, against {min(nodes):.2f}–{max(nodes):.2f} on 8-GPU nodes, "
            "where the MoE's weights leave little HBM for KV."
        )
    return lines


def counterfactual_ratios(ds) -> dict:
    at = dict(hardware="b200", num_gpus=8, kappa=KAPPA)
    r = lambda m, L: _get(ds, "dense_moe_ratio", model=m, context=L, **at)  # noqa: E731
    return {
        "gpt-oss": {
            "published": {8: r("gpt-oss-120b", 8192), 128: r("gpt-oss-120b", 131072)},
            "full": {8: r("gpt-oss-120b-all-full", 8192), 128: r("gpt-oss-120b-all-full", 131072)},
            "sliding": {8: r("gpt-oss-120b-all-sliding", 8192), 128: r("gpt-oss-120b-all-sliding", 131072)},
            "sliding_kappa1": _get(
                ds, "dense_moe_ratio", model="gpt-oss-120b-all-sliding", context=131072, hardware="b200", num_gpus=8, kappa=1.0
            ),
        },
        "qwen": {
            "published": {8: r("qwen3-next-80b-a3b", 8192), 128: r("qwen3-next-80b-a3b", 131072)},
            "full": {8: r("qwen3-next-all-full", 8192), 128: r("qwen3-next-all-full", 131072)},
        },
    }


def run(run_dir: Path, run_cli) -> tuple[int, str]:
    """The study; ``run_cli(step, args, run_dir)`` runs a moejax CLI (``sweeps/run.py``'s ``_run``)."""
    import xarray as xr

    paths = write_counterfactuals(run_dir)
    models = ",".join([*MODELS, *(str(p) for p in paths.values())])
    out = run_dir / "sweep.nc"
    rc, _, seconds = run_cli(
        "sweep",
        ["moejax.sweep", "+grid=modern", f"grid.models=[{models}]", f"out={out}", f"hydra.run.dir={run_dir / 'hydra'}"],
        run_dir,
    )
    if rc:
        return rc, ""
    ds = xr.open_dataset(out)
    names = {str(p): n for n, p in paths.items()}
    ds = ds.assign_coords(model=[names.get(str(m), str(m)) for m in ds.model.values])
    import moejax
    from moejax.physics import arch

    rows, ratios = point_rows(ds, MODELS)
    kv_growth = {
        m: {L: float(arch.kv_bytes_per_sequence(moejax.load_model(m), float(L))) for L in (8192, 131072)} for m in MODELS
    }
    cf = counterfactual_ratios(ds)
    cf_rows, _ = point_rows(ds, tuple(paths))
    (run_dir / "modern.json").write_text(
        json.dumps({"ratios": {"|".join(map(str, k)): v for k, v in ratios.items()}, "counterfactuals": cf}, indent=1)
    )
    kv_head = ["model", "KV B/token of context", "fixed MB/sequence", "GB/seq 8k", "GB/seq 32k", "GB/seq 128k", "128k / 8k"]
    head = [
        "model",
        "system",
        "context",
        f"MoE tok/s/GPU (κ={KAPPA:g} run)",
        "MoE B/replica",
        "dense/MoE κ=1",
        "κ=2",
        "κ=5",
        "MoE bound",
        f"qs holds (κ={KAPPA:g})",
    ]
    text = [
        "# Modern MoEs against κ-matched dense models",
        "",
        f"Generated by `python sweeps/run.py modern` (`python -m moejax.sweep +grid=modern`, {seconds:.0f} s; "
        "`conf/grid/modern.yaml`): realistic accounting, each model in its released dtypes, each point at its best "
        "partition (TP × DP-attention × KVP, EP up to 72, dense_tp searched) and B = B_max. Dense baselines are "
        "keep-attention (the MoE's depth, attention and its layer pattern kept, FFN sized to κ·ρ·P_total), so both "
        "sides hold the same KV per sequence. The qs inequality holds where the dense/MoE throughput-per-GPU ratio "
        "exceeds 1 (— : no baseline at that κ, κ·ρ·P_total is below the kept attention and embeddings, or no feasible "
        "point).",
        "",
        "## Conclusion",
        "",
        *conclusion(ratios, cf, kv_growth),
        "",
        "## 1. KV accounted three ways (BF16 KV unless the model's dtypes say otherwise)",
        "",
        "Bytes stored per token of context (full and sparse layers; the indexer key included), the fixed bytes of one "
        "sequence (sliding windows and chunks at 128k, linear-attention states), and the total per sequence.",
        "",
        md_table(kv_head, kv_rows(paths), "lrrrrrr"),
        "",
        "## 2. Dense/MoE throughput per GPU",
        "",
        md_table(head, rows, "lllrrrrrll"),
        "",
        "## 3. Counterfactual attention patterns (same weights, every layer of one kind)",
        "",
        md_table(head, cf_rows, "lllrrrrrll"),
        "",
        "Readings: `MoE bound` is what bounds the MoE's step at κ = 5 (HBM: weight and KV reads). The H200 × 8 node "
        "cannot hold Kimi-K2 (1.03 T parameters in FP8). Qwen3-Next has no κ = 1 baseline (κ·ρ·P_total = 1.6 B is "
        "below its kept attention and embeddings).",
    ]
    return 0, "\n".join(text) + "\n"
