"""One point, explained: ``python -m moejax.point model=NAME hardware=NAME num_gpus=N context=TOKENS``
(or ``isl=TOKENS osl=TOKENS`` for context; config ``conf/point.yaml``).

Prints the best configuration (at ``batch``, default B_max) with its breakdown (compute, HBM,
communication, exposed communication; the step by phase, ``decode_phases``; memory per GPU: weights,
KV, reserve, free), $/Mtok and
J/token, the top partitions, a frontier (at each of ``levels`` tokens/s per user, the most tokens/s
per GPU of any partition at any of ``batches`` or B_max reaching it) and, with isl/osl, TTFT and
end-to-end tokens/s per GPU for chunked (aggregated) vs disaggregated prefill. Every candidate
partition is evaluated in one vmapped call (``moejax.analysis.point``).

``launch=vllm|sglang|trtllm`` adds the command line (for trtllm-serve, with its extra options
YAML) that deploys the best configuration, and with isl/osl the disaggregated roles when they win
(``moejax.analysis.launch``; flags and sources in ``conf/launch.yaml``). ``what_if.FIELD=FACTOR``
(any of ``WHAT_IF_FIELDS``: HardwareSpec and Accounting quantities) adds the best configuration
with that field multiplied, beside the baseline, and their ratio. Bad input: one line on stderr,
exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import hydra
import jax
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .analysis.launch import ENGINES, Deployment, launch, model_path
from .analysis.point import WHAT_IF_FIELDS, PointQuery, explain
from .analysis.validation import intervals
from .catalogue import CONF_DIR, available, load_accounting, load_model, model_entry
from .cli import one_line_errors, run_command
from .engine.config import validate_partitions
from .engine.grid import PartitionSpace
from .physics.specs import SpecError

# point.yaml's ``what_if`` node (its defaults list: ``what_if_schema@what_if``): one factor per scalable
# field, null by default, its keys the specs' (``analysis.point.what_if_fields``); values stay untyped so
# that ``explain`` refuses a bad factor in its own words
ConfigStore.instance().store(
    name="what_if_schema",
    node=dataclasses.make_dataclass("WhatIf", [(f, Any, dataclasses.field(default=None)) for f in WHAT_IF_FIELDS]),
)


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) or OmegaConf.is_list(value) else value


def query(cfg: DictConfig) -> PointQuery:
    """The validated query of a composed config (one-line ``SpecError`` on the first problem)."""
    choices = HydraConfig.get().runtime.choices
    model, hardware = choices.get("model"), choices.get("hardware")
    for field, name in (("model", model), ("hardware", hardware)):
        if name is None:
            raise SpecError(f"{field} is missing: give {field}=NAME, available {', '.join(available(field))}")
    if cfg.precision not in ("float32", "float64"):
        raise SpecError(f"precision = {cfg.precision!r} is invalid: allowed float32, float64")
    batches, levels = _plain(cfg.batches), _plain(cfg.levels)
    if not isinstance(batches, list):
        raise SpecError(f"batches = {batches!r} is invalid: a non-empty list of positive numbers")
    if not isinstance(levels, list):
        raise SpecError(f"levels = {levels!r} is invalid: a non-empty list of positive numbers (tokens/s per user)")
    raw = _plain(cfg.partitions)
    bad = sorted(set(raw) - set(PartitionSpace.__dataclass_fields__))
    if bad:
        raise SpecError(f"partitions.{bad[0]} is not a known field: allowed {', '.join(PartitionSpace.__dataclass_fields__)}")
    validate_partitions("partitions", raw)
    what_if = {k: v for k, v in _plain(cfg.what_if).items() if v is not None}
    slo = _plain(cfg.slo) or {}
    if not isinstance(slo, dict) or set(slo) - {"tpot_max", "ttft_max"}:
        raise SpecError(f"slo = {slo!r} is invalid: allowed fields tpot_max, ttft_max (seconds, or null)")
    if cfg.launch is not None and cfg.launch not in ENGINES:
        raise SpecError(f"launch = {cfg.launch!r} is invalid: allowed {', '.join(ENGINES)}")
    space = {k: tuple(v) for k, v in raw.items()}
    acc = load_accounting(choices.get("accounting") or "realistic")
    b = cfg.batch  # null: B_max; 0 is not a shorthand for it
    if b is not None and (
        isinstance(b, bool)
        or not isinstance(b, int | float)
        or not math.isfinite(b)
        or b < 1
        or (acc.integer_batch and b != int(b))
    ):
        whole = "a whole number" if acc.integer_batch else "a number"
        raise SpecError(f"batch = {b!r} is invalid: {whole} >= 1 of sequences per replica, or null (B_max)")
    return PointQuery(
        model=model,
        hardware=hardware,
        num_gpus=cfg.num_gpus,
        accounting=acc,
        context=cfg.context,
        isl=cfg.isl,
        osl=cfg.osl,
        batch=0.0 if b is None else b,
        batches=tuple(batches),
        levels=tuple(levels),
        top=cfg.top,
        chunk=cfg.chunk,
        dtypes=dict(_plain(cfg.dtypes)),
        space=PartitionSpace(**space),
        price_per_gpu_hour=cfg.price_per_gpu_hour,
        board_power=cfg.board_power,
        what_if=what_if,
        tpot_max=slo.get("tpot_max"),
        ttft_max=slo.get("ttft_max"),
    )


PHASE_LABELS = {"dense": "dense FFN", "moe": "MoE FFN", "head": "LM head"}  # the rest print as named (attention, sliding, ...)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), *map(fmt, rows)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def _band(x: float, lo: float, hi: float, fmt) -> str:
    return f" (80 %: {fmt(x * lo)} – {fmt(x * hi)})"


def interval_of(table: dict | None, hardware: str) -> tuple[dict, str, str] | None:
    """The accounting's 80 % interval for this hardware, any engine (``intervals.lookup`` with no
    backend: the point's accounting carries no engine profile), or None without a table."""
    return None if table is None else intervals.lookup(table, None, hardware)


def report(r: dict, q: PointQuery, interval: tuple[dict, str, str] | None = None) -> str:
    """The printed point; with ``interval`` (``interval_of``), the 80 % interval beside the central
    step time (TPOT factors), throughputs (their inverse, at the same batch) and TTFT."""
    econ = r["economics"]
    bd = interval[0] if interval else None
    t_lo, t_hi = bd["tpot"] if bd else (1.0, 1.0)
    f_lo, f_hi = bd["ttft"] if bd else (1.0, 1.0)

    def tband(x, fmt):  # a time: the TPOT factors
        return _band(x, t_lo, t_hi, fmt) if bd else ""

    def rband(x, fmt):  # a rate at the same batch: their inverse
        return _band(x, 1 / t_hi, 1 / t_lo, fmt) if bd else ""

    lines = [
        f"{r['model']} on {r['num_gpus']} x {r['hardware']}, decode context {r['context']:g} tokens"
        + (f" (isl {q.isl:g} + osl {q.osl:g}/2)" if q.isl is not None else "")
        + f", accounting {q.accounting.mode}; {r['feasible']} of {r['candidates']} legal partitions fit"
    ]
    b = r["best"]
    if b is None:
        return "\n".join(lines + ["no candidate partition fits at this batch and context"])
    lines += [
        "",
        f"best: {b['partition']}  batch {b['batch']:g} per replica (B_max {b['b_max']:g}), bound: {b['bound_name']}",
        f"  {b['throughput_per_gpu']:.1f}{rband(b['throughput_per_gpu'], '{:.1f}'.format)} tokens/s per GPU, "
        f"{b['tokens_per_s_per_user']:.2f}{rband(b['tokens_per_s_per_user'], '{:.2f}'.format)} tokens/s per user, "
        f"step {_ms(b['step_time'])}{tband(b['step_time'], _ms)}",
        f"  compute {_ms(b['t_compute'])}, HBM {_ms(b['t_hbm'])}, communication {_ms(b['t_comm'])} "
        f"(exposed {_ms(b['t_comm_exposed'])})",
        "  by phase: "  # each phase's layers: max(compute, HBM) + exposed communication (decode_phases)
        + ", ".join(f"{PHASE_LABELS.get(k, k)} {_ms(t)}" for k, t in b["phases"].items())
        + (
            f"; latencies and pipeline sends {_ms(b['step_time'] - sum(b['phases'].values()))}"
            if q.accounting.roofline == "phase"
            else ""
        ),
        f"  memory per GPU: weights {_gb(b['weight_bytes_per_gpu'])}, KV {_gb(b['kv_bytes_per_gpu'])}, "
        f"reserve {_gb(b['reserve_bytes'])}, free {_gb(b['free_bytes'])} of {_gb(b['memory_per_gpu'] + b['free_bytes'])}",
        f"  ${b['cost_per_mtok']:.4f} per million output tokens at ${econ.price_per_gpu_hour:g}/GPU-hour; "
        f"{b['joules_per_token']:.4f} J per token at {econ.board_power:g} W board power (no host, cooling or PUE)",
        *(
            [
                (
                    f"  80 % interval ({interval[1]}{': ' + interval[2] if interval[2] else ''}): "
                    f"TPOT ×{t_lo:.2f} – ×{t_hi:.2f}, "
                    f"TTFT ×{f_lo:.2f} – ×{f_hi:.2f} of the central value (grouped-CV residuals of the serving fit)"
                )
            ]
            if bd
            else []
        ),
        "",
        f"top {len(r['top'])} partitions:",
    ]
    lines += _table(
        ["partition", "tok/s/GPU", "tok/s/user", "batch", "bound"],
        [
            [t["partition"], f"{t['throughput_per_gpu']:.1f}", f"{t['tokens_per_s_per_user']:.2f}", f"{t['batch']:g}", t["bound"]]
            for t in r["top"]
        ],
    )
    lines += ["", "frontier (at each interactivity level, the most tokens/s per GPU of any partition and batch reaching it):"]
    lines += _table(
        [">= tok/s/user", "tok/s/user", "tok/s/GPU", "$/Mtok", "J/token", "batch", "bound", "partition"],
        [
            [
                f"{f['level']:g}",
                f"{f['tokens_per_s_per_user']:.2f}",
                f"{f['throughput_per_gpu']:.1f}",
                f"{f['cost_per_mtok']:.4f}",
                f"{f['joules_per_token']:.4f}",
                f"{f['batch']:g}",
                f["bound"],
                f["partition"],
            ]
            for f in r["frontier"]
        ],
    )
    s = r["serving"]
    if s is None:
        lines += ["", "TTFT: give isl= and osl= (instead of context=) for time to first token, chunked vs disaggregated"]
    else:
        lines += [
            "",
            (
                "serving in steady state (physics/served.py: prompt chunks ride on decode steps; a disaggregated "
                "prefill pool at utilisation 0.8), end-to-end output tokens/s per GPU:"
            ),
        ]
        rows = []
        for mode, x in s.items():
            where = x["partition"] + (f" + prefill {x['prefill_partition']}" if "prefill_partition" in x else "")
            band = [f"{_ms(x['ttft'] * f_lo)} – {_ms(x['ttft'] * f_hi)}"] if bd else []
            rows.append(
                [
                    mode,
                    _ms(x["ttft"]),
                    *band,
                    _ms(x["tpot"]),
                    f"{x['throughput_per_gpu']:.1f}",
                    f"{x['tokens_per_s_per_user']:.2f}",
                    f"{x['prefill_share']:.3f}",
                    f"{x['cost_per_mtok']:.4f}",
                    f"{x['joules_per_token']:.4f}",
                    where,
                ]
            )
        lines += _table(
            [
                "mode",
                "TTFT",
                *(["TTFT 80 %"] if bd else []),
                "TPOT",
                "tok/s/GPU",
                "tok/s/user",
                "prefill share",
                "$/Mtok",
                "J/token",
                "partitions",
            ],
            rows,
        )
    if r.get("slo") is not None:
        lines += ["", *slo_lines(r["slo"], q)]
    return "\n".join(lines)


def slo_lines(slo: dict, q: PointQuery) -> list[str]:
    """The SLO section: each mode's cheapest configuration meeting it, and which is cheaper."""
    limits = [f"TPOT <= {_ms(q.tpot_max)}"] * (q.tpot_max is not None) + [f"TTFT <= {_ms(q.ttft_max)}"] * (q.ttft_max is not None)
    lines = [f"under the SLO ({', '.join(limits)}), the cheapest configuration of each mode over partitions x batches:"]
    rows = []
    for mode in ("aggregated", "disaggregated"):
        x = slo[mode]
        if x is None:
            rows.append([mode, "-", "-", "-", "-", "-", "-", "-", "SLO not met"])
            continue
        where = x["partition"] + (f" + prefill {x['prefill_partition']}" if "prefill_partition" in x else "")
        rows.append(
            [
                mode,
                _ms(x["ttft"]),
                _ms(x["tpot"]),
                f"{x['throughput_per_gpu']:.1f}",
                f"{x['tokens_per_s_per_user']:.2f}",
                f"{x['batch']:g}",
                f"{x['prefill_share']:.3f}",
                f"{x['cost_per_mtok']:.4f}",
                where,
            ]
        )
    lines += _table(["mode", "TTFT", "TPOT", "tok/s/GPU", "tok/s/user", "batch", "prefill share", "$/Mtok", "partitions"], rows)
    cheaper = slo["cheaper"]
    lines.append("neither mode meets the SLO" if cheaper is None else f"-> {cheaper} serving is cheaper per token under this SLO")
    return lines


def launch_section(r: dict, q: PointQuery, engine: str) -> str:
    """The launch text (``moejax.analysis.launch``) of the best configuration; with isl/osl, when
    disaggregated serving beats aggregated, the prefill and decode roles too."""
    b = r["best"]
    if b is None:
        return f"\nlaunch ({engine}): no configuration fits, nothing to launch"
    kv = q.dtypes.get("kv") or model_entry(q.model).get("dtypes", {}).get("kv", "bf16")
    base = dict(model=model_path(q.model), batch=b["batch"], kv_dtype=kv, moe=float(load_model(q.model).n_experts) > 1)
    lines = [
        "",
        f"launch ({engine}) of the best configuration above (one replica):",
        launch(engine, Deployment(degrees=b["degrees"], **base)),
    ]
    s = r["serving"] or {}
    if "disaggregated" in s and s["disaggregated"]["throughput_per_gpu"] > s.get("aggregated", {}).get("throughput_per_gpu", 0.0):
        lines += ["", "disaggregated serving does better here (serving table above): its roles"]
        for role, degrees in (("prefill", s["disaggregated"]["prefill_degrees"]), ("decode", s["disaggregated"]["degrees"])):
            lines.append(launch(engine, Deployment(degrees=degrees, role=role, **base)))
    return "\n".join(lines)


def what_if_section(base: dict, variant: dict, what_if: dict) -> str:
    """Baseline, variant and variant/baseline for the best configuration of each."""
    change = ", ".join(f"{k} x {v:g}" for k, v in what_if.items())
    lines = ["", f"what if {change} (best configuration of each; ratio = variant / baseline):"]
    a, b = base["best"], variant["best"]
    if a is None or b is None:
        return "\n".join(lines + [f"  {'baseline' if a is None else 'variant'}: no candidate partition fits"])
    rows = []
    for key, label, fmt in (
        ("throughput_per_gpu", "tokens/s per GPU", "{:.1f}"),
        ("tokens_per_s_per_user", "tokens/s per user", "{:.2f}"),
        ("step_time", "step time (ms)", "{:.3f}"),
        ("batch", "batch per replica", "{:g}"),
        ("cost_per_mtok", "$ per Mtok", "{:.4f}"),
        ("joules_per_token", "J per token", "{:.4f}"),
    ):
        scale = 1e3 if key == "step_time" else 1.0
        x, y = a[key] * scale, b[key] * scale
        rows.append([label, fmt.format(x), fmt.format(y), f"{y / x:.3f}" if x else "n/a"])
    rows += [["partition", a["partition"], b["partition"], ""], ["bound", a["bound_name"], b["bound_name"], ""]]
    return "\n".join(lines + _table(["", "baseline", "variant", "ratio"], rows))


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="point")
def main(cfg: DictConfig) -> None:
    def job(run_dir: Path) -> str:
        if cfg.precision == "float64":
            jax.config.update("jax_enable_x64", True)
        q = query(cfg)
        r = explain(dataclasses.replace(q, what_if={}))
        table = intervals.load(HydraConfig.get().runtime.choices.get("accounting") or "realistic")
        text = report(r, q, interval_of(table, q.hardware))
        if q.what_if:
            text += "\n" + what_if_section(r, explain(q), q.what_if)
        if cfg.launch:
            text += "\n" + launch_section(r, q, cfg.launch)
        return text

    run_command(job, cfg.get("compilation_cache"))


if __name__ == "__main__":
    main()
