"""peers study: moejax beside GenZ, llm-analysis and AIConfigurator on the decode cases of
``moejax/data/reference/peers/cases.md`` (vendored from the shared reference).

Every decode-latency table of cases.md is parsed (38 cases: Llama-3-70B TP8 on 8×H100 at three
batches × three contexts, Mixtral-8x22B schemes on 8×H100, DeepSeek-V3 schemes on 8×H200 and
16×H100). Each case becomes an entry in the measurement format (``moejax.analysis.validation``) and
is deployed exactly as ``python -m moejax.validate`` deploys one: the scheme as a partition (TPn:
tp n; EPn: ep n; PPn: pp n; DPn: dp_attn n, so DPn-EPn is tp 1 × dp_attn n with ep n), dtypes as
in ``aic-silicon.yaml`` for that model, ``dense_tp`` searched over the legal {1, 2, 4, 8, all},
redundant experts where ep does not divide the experts. It is evaluated in ``sol`` and
``realistic`` accounting at the stated batch and context (decode step latency, ms).

A case that does not fit in memory in moejax is reported as infeasible AND given the step time with
the capacity check bypassed (HBM capacity × 1000), as the peers' drivers did for the cases they flag
``*``: so every case has a latency, and the flags say which ones no tool can really run.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import yaml

from . import md_table, num

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = REPO / "moejax" / "data" / "reference" / "peers"
MODELS = {"Llama-3-70B": "llama-3-70b", "Mixtral-8x22B": "mixtral-8x22b", "DeepSeek-V3": "deepseek-v3"}
HARDWARE = {"H100-SXM": "h100-sxm", "H200-SXM": "h200"}
PEER_COLUMNS = {
    "GenZ ms": "genz",
    "GenZ-u ms": "genz",
    "GenZ-p ms": "genz_preset",
    "llm-analysis ms": "llm_analysis",
    "AIC SILICON ms": "aic_silicon",
    "AIC SOL ms": "aic_sol",
}
PEERS = ("genz", "llm_analysis", "aic_silicon", "aic_sol", "genz_preset")
PEER_TITLES = {
    "genz": "GenZ",
    "llm_analysis": "llm-analysis",
    "aic_silicon": "AIC silicon",
    "aic_sol": "AIC SOL",
    "genz_preset": "GenZ preset (DSv3)",
}
MODES = ("sol", "realistic")
WORST = 6  # largest disagreements listed per like-for-like pair
BYPASS = 1000.0  # HBM capacity multiplier for the capacity-bypassed latency of infeasible cases


@dataclasses.dataclass
class Case:
    """One decode case: where it is, its conditions, and each peer's latency (ms) and flag
    ("" | "*" = the tool flags OOM | "n/e" = not expressible in the tool | "ERR" = the tool failed)."""

    id: str
    model: str
    hardware: str
    num_gpus: int
    scheme: str
    batch: int
    context: int
    peers: dict  # peer -> (ms or None, flag)


def _cell(text: str) -> tuple[float | None, str]:
    text = text.strip()
    if text in ("n/e", "ERR"):
        return None, text
    star = text.endswith("*")
    return float(text.rstrip("*")), "*" if star else ""


def _table(lines: list[str]) -> list[dict]:
    """The first markdown table in ``lines`` as a list of {header: cell}."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.strip().startswith("|")]
    header, body = rows[0], rows[2:]
    return [dict(zip(header, r)) for r in body]


def parse_cases(path: Path) -> list[Case]:
    """Every row of every "decode step latency" table of cases.md, in file order."""
    cases = []
    for section in re.split(r"^### ", path.read_text(), flags=re.MULTILINE)[1:]:
        heading, *lines = section.splitlines()
        if "decode step latency" not in heading:
            continue
        model = MODELS[heading.split(",")[0].strip()]
        node = re.search(r"(\d+)x ([\w-]+)", heading)
        scheme = re.search(r"\b((?:TP|EP|PP|DP)\d+(?:-(?:TP|EP|PP|DP)\d+)*)\b", heading)
        ctx = re.search(r"ctx (\d+)", heading)
        for row in _table(lines):
            hw = re.fullmatch(r"([\w-]+?)x(\d+)", row["hw"]) if "hw" in row else None
            hardware, gpus = (hw[1], int(hw[2])) if hw else (node[2], int(node[1]))
            c = Case(
                id="",
                model=model,
                hardware=HARDWARE[hardware],
                num_gpus=gpus,
                scheme=row.get("scheme") or scheme[1],
                batch=int(row["batch"]),
                context=int(row.get("ctx") or ctx[1]),
                peers={PEER_COLUMNS[k]: _cell(v) for k, v in row.items() if k in PEER_COLUMNS},
            )
            c.id = f"{model}-{c.hardware}x{gpus}-{c.scheme.lower()}-b{c.batch}-ctx{c.context}"
            cases.append(c)
    return cases


def scheme_partition(scheme: str) -> dict:
    """``TP8-PP2-EP8`` -> {tp: 8, pp: 2, ep: 8}; DPn is attention data parallelism (dp_attn n)."""
    key = {"TP": "tp", "EP": "ep", "PP": "pp", "DP": "dp_attn"}
    return {key[k]: int(v) for k, v in re.findall(r"(TP|EP|PP|DP)(\d+)", scheme)}


def measurement(case: Case, dtypes: dict):
    """The case as a checked measurement-format entry (its step_time is a placeholder: the peers'
    latencies are compared here, not through the entry)."""
    from moejax.analysis.validation.measurements import check_entry

    raw = {
        "id": case.id,
        "source": "moejax/data/reference/peers/cases.md",
        "firmness": "peer-model",
        "model": case.model,
        "hardware": case.hardware,
        "num_gpus": case.num_gpus,
        "partition": scheme_partition(case.scheme),
        "dtypes": dtypes,
        "phase": "decode",
        "batch": case.batch,
        "context": case.context,
        "measured": {"step_time": 1.0},
    }
    return check_entry(PEERS_DIR / "cases.md", 0, raw)


def _bypassed(point):
    """The point with the feasibility checks lifted: HBM capacity × ``BYPASS`` and at least one
    sequence per pipeline microbatch and attention group (batch ≥ pp·dp_attn). At batch 1 on PP2
    the step of two one-sequence microbatches is the time one token takes through both stages, so
    the latency a single sequence sees is kept."""
    from moejax.physics.specs import replace

    p = point.partitions[0]
    floor = float(p.pp * p.dp_attn)
    wl = replace(point.workload, batch=max(float(point.workload.batch), floor))
    return dataclasses.replace(point, hardware=replace(point.hardware, hbm_bytes=point.hardware.hbm_bytes * BYPASS), workload=wl)


def _why_infeasible(point, b_max: float) -> str:
    p, batch = point.partitions[0], float(point.workload.batch)
    if batch < float(p.pp * p.dp_attn):
        return f"batch {batch:.0f} < pp·dp_attn = {float(p.pp * p.dp_attn):.0f} (a pipeline microbatch would be empty)"
    return f"does not fit: batch {batch:.0f} > B_max {b_max:.0f}"


def evaluate(cases: list[Case]) -> dict:
    """Per mode: step time (ms; with the checks lifted where infeasible), feasible, the reason when
    not, B_max (the largest over the dense_tp choices), the dense_tp and bound of the evaluated
    layout; and the not-expressible reasons."""
    from moejax.analysis.validation.deploy import resolve
    from moejax.analysis.validation.evaluate import evaluate as run_points
    from moejax.catalogue import load_accounting
    from moejax.physics.cost import batch_capacity

    aic = yaml.safe_load((PEERS_DIR / "aic-silicon.yaml").read_text())
    dtypes = {}
    for e in aic:
        dtypes.setdefault(e["model"], e["dtypes"])
    resolved = [resolve(measurement(c, dtypes[c.model])) for c in cases]
    not_expressible = {c.id: r for c, r in zip(cases, resolved) if isinstance(r, str)}
    points = [r for r in resolved if not isinstance(r, str)]
    index = [i for i, r in enumerate(resolved) if not isinstance(r, str)]
    bypassed = [_bypassed(p) for p in points]
    out = {"not_expressible": not_expressible, "dtypes": dtypes}
    n = len(cases)
    for mode in MODES:
        acc = load_accounting(mode)
        ev, evb = run_points(points, acc), run_points(bypassed, acc)
        res = {
            "step_ms": [math.nan] * n,
            "feasible": [False] * n,
            "why": [""] * n,
            "b_max": [math.nan] * n,
            "variant": [""] * n,
            "bound": [""] * n,
        }
        for j, i in enumerate(index):
            ok = bool(ev.feasible[j])
            use = ev if ok else evb
            pt = points[j]
            b_max = max(float(batch_capacity(pt.model, pt.hardware, q, pt.workload.context, acc)[0]) for q in pt.partitions)
            res["feasible"][i], res["b_max"][i] = ok, b_max
            res["why"][i] = "" if ok else _why_infeasible(pt, b_max)
            res["step_ms"][i] = float(use.figures[j, 0]) * 1e3
            res["variant"][i] = use.variant[j].split(" (")[0]
            res["bound"][i] = ("compute", "hbm", "communication", "infeasible")[int(use.bound[j])]
        out[mode] = res
    return out


def _stats(pairs: list[tuple[float, float]]) -> tuple[int, float, float, float]:
    """(n, median |log(moejax/peer)|, p90, geometric-mean moejax/peer) over (moejax, peer) pairs."""
    logs = np.array([math.log(a / b) for a, b in pairs])
    if not len(logs):
        return 0, math.nan, math.nan, math.nan
    return len(logs), float(np.median(np.abs(logs))), float(np.percentile(np.abs(logs), 90)), float(np.exp(logs.mean()))


def statistics(cases: list[Case], res: dict) -> list[dict]:
    """Agreement of each moejax mode with each peer, over every case where both have a latency
    ("all": OOM-flagged cases at their capacity-bypassed latencies included) and over the cases no
    tool flags and moejax finds feasible ("clean")."""
    rows = []
    for mode in MODES:
        for peer in PEERS:
            for subset in ("all", "clean"):
                pairs = []
                for i, c in enumerate(cases):
                    ms, (value, flag) = res[mode]["step_ms"][i], c.peers.get(peer, (None, "n/e"))
                    if value is None or not math.isfinite(ms):
                        continue
                    if subset == "clean" and (flag == "*" or not res[mode]["feasible"][i]):
                        continue
                    pairs.append((ms, value))
                n, med, p90, gm = _stats(pairs)
                rows.append({"mode": mode, "peer": peer, "subset": subset, "n": n, "median": med, "p90": p90, "gmean": gm})
    return rows


def _peer_cell(case: Case, peer: str) -> str:
    if peer not in case.peers:
        return ""
    value, flag = case.peers[peer]
    return flag if value is None else f"{value:.2f}{flag}"


def _moejax_cell(res: dict, mode: str, i: int, not_expressible: bool) -> str:
    if not_expressible:
        return "n/e"
    ms, why = res[mode]["step_ms"][i], res[mode]["why"][i]
    return f"{ms:.2f}" + ("" if not why else " (OOM)" if why.startswith("does not fit") else " (pp)")


def _aic_yaml_check(cases: list[Case]) -> tuple[int, int]:
    """(cases whose AIC silicon value has an entry in aic-silicon.yaml, of which agree to 0.1 %)."""
    aic = {e["id"]: e for e in yaml.safe_load((PEERS_DIR / "aic-silicon.yaml").read_text())}
    found = agree = 0
    for c in cases:
        e = next(
            (
                v
                for k, v in aic.items()
                if k.startswith(f"aic-{c.model}-{c.hardware}") and k.split(f"aic-{c.model}-", 1)[1].startswith(_yaml_key(c))
            ),
            None,
        )
        if e is None:
            continue
        found += 1
        agree += math.isclose(e["measured"]["step_time"] * 1e3, c.peers["aic_silicon"][0] or math.nan, rel_tol=1e-3)
    return found, agree


def _yaml_key(c: Case) -> str:
    """The id stem aic-silicon.yaml uses: ``h100-sxmx8-tp8-b1-ctx1024-`` (hardware spelled as in cases.md)."""
    hw = {"h100-sxm": "h100-sxm", "h200": "h200-sxm"}[c.hardware]
    return f"{hw}x{c.num_gpus}-{c.scheme.lower()}-b{c.batch}-ctx{c.context}-"


def render(cases: list[Case], res: dict, stats: list[dict], validate: dict, seconds: float) -> str:
    nx = res["not_expressible"]
    header = [
        "case",
        "GenZ",
        "llm-analysis",
        "AIC silicon",
        "AIC SOL",
        "moejax sol",
        "moejax realistic",
        "GenZ preset (DSv3)",
        "moejax B_max sol / realistic (best dense_tp)",
        "moejax dense_tp (sol)",
        "moejax bound (sol)",
    ]
    rows = []
    for i, c in enumerate(cases):
        nexp = c.id in nx
        rows.append(
            [
                f"{c.model} {c.hardware}×{c.num_gpus} {c.scheme} b{c.batch} ctx{c.context}",
                *(_peer_cell(c, p) for p in ("genz", "llm_analysis", "aic_silicon", "aic_sol")),
                _moejax_cell(res, "sol", i, nexp),
                _moejax_cell(res, "realistic", i, nexp),
                _peer_cell(c, "genz_preset"),
                "—" if nexp else f"{res['sol']['b_max'][i]:.0f} / {res['realistic']['b_max'][i]:.0f}",
                "—" if nexp else res["sol"]["variant"][i].replace("dense_tp = 0", "dense_tp = all"),
                "—" if nexp else res["sol"]["bound"][i],
            ]
        )
    stat_rows = [
        [
            r["mode"],
            PEER_TITLES[r["peer"]],
            r["subset"],
            str(r["n"]),
            num(r["median"], "{:.3f}"),
            num(r["median"] if math.isnan(r["median"]) else math.exp(r["median"]), "×{:.2f}"),
            num(r["p90"], "{:.3f}"),
            num(r["p90"] if math.isnan(r["p90"]) else math.exp(r["p90"]), "×{:.2f}"),
            num(r["gmean"], "{:.3f}"),
        ]
        for r in stats
    ]
    infeasible = {m: [c.id for i, c in enumerate(cases) if c.id not in nx and not res[m]["feasible"][i]] for m in MODES}
    flagged = {p: sum(1 for c in cases if c.peers.get(p, (0, ""))[1] == "*") for p in PEERS}
    unexpressed = {p: sum(1 for c in cases if c.peers.get(p, (0, ""))[1] in ("n/e", "ERR")) for p in PEERS}
    found, agree = _aic_yaml_check(cases)
    parts = [
        "# peers study: moejax beside GenZ, llm-analysis and AIConfigurator",
        "",
        f"Generated by `python sweeps/run.py peers` ({seconds:.0f} s) from `moejax/data/reference/peers/cases.md` "
        f"({len(cases)} decode cases; latencies in ms per decode step). Every case is deployed as "
        "`python -m moejax.validate` deploys a measurement: the scheme as the partition (TPn → tp n, EPn → ep n, "
        "PPn → pp n, DPn → dp_attn n, so DPn-EPn is tp 1 × dp_attn n with ep n), dtypes as `aic-silicon.yaml` gives "
        "them per model ("
        + "; ".join(
            f"{m}: weights {d['weights']}, KV {d['kv']}, activations {d['activations']}" for m, d in res["dtypes"].items()
        )
        + "), `dense_tp` (the dense FFN's and LM head's TP degree, which no scheme states) searched over the legal "
        "{1, 2, 4, 8, all}, the batch and context as stated. `sol`: peak hardware, no overheads; `realistic`: the "
        "default preset, each kernel's fixed cost and its class's efficiency fitted on kernel timings plus three "
        "end-to-end constants fitted on measured serving runs (`conf/accounting/realistic.yaml`).",
        "",
        "Flags: `*` the tool flags the case as not fitting in memory (its latency computed with the capacity check "
        "bypassed); `n/e` the tool cannot express the scheme; `ERR` the tool failed; `(OOM)` moejax finds the case "
        f"does not fit (B_max below the batch) and shows its latency with the capacity check bypassed (HBM × {BYPASS:g}); "
        "`(pp)` moejax rejects the case because batch 1 leaves a pipeline microbatch empty, and shows the step of one "
        "sequence per microbatch (batch 2 on PP2: the time one token takes through both stages, i.e. the latency a "
        "single sequence sees; the largest stage counted twice). No case is dropped. GenZ is its user-defined "
        "DeepSeek-V3 variant (GenZ-u) for DeepSeek-V3; its shipped preset "
        "(GenZ-p, 18432-wide experts, ~6.2T parameters) is shown apart and kept out of the headline comparison.",
        "",
        "## Agreement",
        "",
        "|log(moejax / peer)| over the cases where both give a latency: `all` includes OOM-flagged cases at their "
        "capacity-bypassed latencies; `clean` keeps only cases no flag marks (the peer shows no `*` and moejax finds "
        "the case feasible). gmean = geometric mean of moejax / peer (bias). The like-for-like pairs are moejax sol "
        "vs AIC SOL (both speed of light) and moejax realistic vs AIC silicon (measured-kernel interpolation).",
        "",
        md_table(
            ["moejax mode", "peer", "cases", "n", "median |log|", "median ratio", "p90 |log|", "p90 ratio", "gmean moejax/peer"],
            [r for r in stat_rows if r[0:2] in (["sol", "AIC SOL"], ["realistic", "AIC silicon"])],
            "lllrrrrrr",
        ),
        "",
        "All pairs:",
        "",
        md_table(
            ["moejax mode", "peer", "cases", "n", "median |log|", "median ratio", "p90 |log|", "p90 ratio", "gmean moejax/peer"],
            stat_rows,
            "lllrrrrrr",
        ),
        "",
        "Flags: OOM `*` — "
        + ", ".join(f"{PEER_TITLES[p]} {flagged[p]}" for p in PEERS)
        + "; n/e or ERR — "
        + ", ".join(f"{PEER_TITLES[p]} {unexpressed[p]}" for p in PEERS)
        + f". moejax: not expressible {len(nx)}"
        + "".join(f" ({k}: {v})" for k, v in nx.items())
        + "; infeasible in sol "
        f"{len(infeasible['sol'])}, in realistic {len(infeasible['realistic'])} (listed below). AIC silicon values "
        f"of cases.md found in `aic-silicon.yaml`: {found}, of which {agree} agree to 0.1 %.",
        "",
    ]
    if validate:
        parts += [
            "## `python -m moejax.validate` on `aic-silicon.yaml`",
            "",
            "The same cases in the measurement format (AIC silicon latencies as the measured figure; only cases AIC "
            "ran without an OOM flag), through the validation command itself:",
            "",
            md_table(
                ["accounting", "entries", "evaluated", "infeasible", "not expressible", "median |log|", "p90 |log|"],
                [
                    [
                        m,
                        str(v["n"]),
                        str(v["evaluated"]),
                        str(len(v["infeasible"])),
                        str(len(v["not_expressible"])),
                        num(v["median_abs_log_ratio"], "{:.3f}"),
                        num(v["p90_abs_log_ratio"], "{:.3f}"),
                    ]
                    for m, v in validate.items()
                ],
                "lrrrrrr",
            ),
            "",
        ]
    worst = []
    for mode, peer in (("sol", "aic_sol"), ("realistic", "aic_silicon")):
        pairs = [
            (abs(math.log(res[mode]["step_ms"][i] / c.peers[peer][0])), i)
            for i, c in enumerate(cases)
            if c.peers.get(peer, (None, ""))[0] is not None and math.isfinite(res[mode]["step_ms"][i])
        ]
        for _, i in sorted(pairs, reverse=True)[:WORST]:
            c = cases[i]
            worst.append(
                [
                    mode,
                    PEER_TITLES[peer],
                    c.id,
                    _moejax_cell(res, mode, i, False),
                    _peer_cell(c, peer),
                    f"{res[mode]['step_ms'][i] / c.peers[peer][0]:.2f}",
                    res[mode]["bound"][i],
                ]
            )
    parts += [
        f"## Largest disagreements ({WORST} per like-for-like pair)",
        "",
        md_table(["moejax mode", "peer", "case", "moejax ms", "peer ms", "moejax / peer", "moejax bound"], worst, "lllrrrl"),
        "",
        "## Per case (decode step latency, ms)",
        "",
        md_table(header, rows, "lrrrrrrrlll"),
        "",
        "## moejax infeasible cases",
        "",
        md_table(
            ["mode", "case", "why"], [[m, c.id, res[m]["why"][i]] for m in MODES for i, c in enumerate(cases) if res[m]["why"][i]]
        ),
    ]
    return "\n".join(parts) + "\n"


def write_csv(path: Path, cases: list[Case], res: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "model",
                "hardware",
                "num_gpus",
                "scheme",
                "batch",
                "context",
                *(f"{p}_ms" for p in PEERS),
                *(f"{p}_flag" for p in PEERS),
                *(f"moejax_{m}_{q}" for m in MODES for q in ("ms", "feasible", "why", "b_max", "variant", "bound")),
                "not_expressible",
            ]
        )
        for i, c in enumerate(cases):
            w.writerow(
                [
                    c.id,
                    c.model,
                    c.hardware,
                    c.num_gpus,
                    c.scheme,
                    c.batch,
                    c.context,
                    *(c.peers.get(p, (None, ""))[0] for p in PEERS),
                    *(c.peers.get(p, (None, "n/e"))[1] for p in PEERS),
                    *(res[m][q][i] for m in MODES for q in ("step_ms", "feasible", "why", "b_max", "variant", "bound")),
                    res["not_expressible"].get(c.id, ""),
                ]
            )


def run(run_dir: Path, run_cli) -> tuple[int, str]:
    """The study; ``run_cli(step, args, run_dir)`` runs a moejax CLI (``sweeps/run.py``'s ``_run``)."""
    import json
    import time

    import jax

    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    cases = parse_cases(PEERS_DIR / "cases.md")
    res = evaluate(cases)
    stats = statistics(cases, res)
    write_csv(run_dir / "peers.csv", cases, res)
    validate = {}
    for mode in MODES:
        rc, out, _ = run_cli(
            f"validate_aic_{mode}",
            [
                "moejax.validate",
                f"measurements={PEERS_DIR / 'aic-silicon.yaml'}",
                f"accounting={mode}",
                f"out={run_dir / ('validate_aic_' + mode)}",
                f"hydra.run.dir={run_dir / 'hydra'}",
            ],
            run_dir,
        )
        if rc:
            return rc, ""
        validate[mode] = json.loads(out.strip().splitlines()[-1])
    (run_dir / "peers.json").write_text(
        json.dumps({"stats": stats, "validate": validate, "not_expressible": res["not_expressible"]}, indent=1)
    )
    return 0, render(cases, res, stats, validate, time.perf_counter() - start)
