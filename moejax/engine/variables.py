"""The registry of result variables: every variable a sweep dataset can hold, declared once.

A :class:`Variable` is a name, its dimensions, its dtype, and its CF metadata (units and
long_name, or flag values and meanings for a flag). ``REGISTRY`` holds the fixed ones, in the
order the sweep writes them; variables whose names or texts depend on the grid (the frontier's
groups, the κ* attributes) are built by functions returning ``Variable`` entries
(``engine.frontier.variables``, :func:`economics_variables`). ``engine.dataset`` reads the
registry to create and label every variable; the analyses name their arrays by registered names.

``docs/dataset.md`` is generated from here (tests/test_variables.py checks it is current)::

    python -m moejax.engine.variables --markdown > docs/dataset.md

Adding a ``StepCosts`` field means adding one entry to ``STEP_COSTS`` below (a test fails when a
field is neither stored nor listed as deliberately left out).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from ..physics.cost import BOUND_MEANINGS
from ..physics.specs import KV_MODES, HardwareSpec
from .grid import ELASTICITY_FIELDS, PARTITION_FIELDS

FLOAT = "float"  # the sweep's float dtype: f4, or f8 with precision=float64
POINT = ("model", "variant", "kappa", "hardware", "num_gpus", "context")  # one grid point
QS_GRID = ("model", "kappa", "hardware", "num_gpus", "context")  # an MoE and its kappa-matched baseline
GRID4 = ("model", "hardware", "num_gpus", "context")  # an MoE alone (kappa*)
REASONS = ("found", "below_kappa_min", "above_kappa_max", "moe_infeasible", "dense_infeasible")  # kappa* flags


@dataclasses.dataclass(frozen=True)
class Variable:
    """One result variable. ``units`` is None for a flag variable (``flag_values`` and
    ``flag_meanings`` then say what each stored integer means). ``dtype`` is a numpy dtype code,
    or ``FLOAT`` for the sweep's float dtype."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    long_name: str
    units: str | None = None
    flag_values: tuple[int, ...] = ()
    flag_meanings: str = ""

    @property
    def is_flag(self) -> bool:
        return self.units is None

    def numpy_dtype(self, float_dtype: str) -> str:
        return float_dtype if self.dtype == FLOAT else self.dtype

    def attrs(self) -> dict:
        """CF attributes: units and long_name, or long_name, flag_values (int8) and flag_meanings."""
        if self.is_flag:
            return {
                "long_name": self.long_name,
                "flag_values": np.array(self.flag_values, dtype=np.int8),
                "flag_meanings": self.flag_meanings,
            }
        return {"units": self.units, "long_name": self.long_name}


def number(name: str, dims: tuple, units: str, long_name: str, dtype: str = FLOAT) -> Variable:
    return Variable(name, tuple(dims), dtype, long_name, units)


def flag(name: str, dims: tuple, long_name: str, values, meanings, dtype: str = "i1") -> Variable:
    """A flag variable; ``meanings`` a sequence of words or one space-separated string."""
    meanings = meanings if isinstance(meanings, str) else " ".join(meanings)
    return Variable(name, tuple(dims), dtype, long_name, None, tuple(int(v) for v in values), meanings)


def kv_mode_flag(name: str, dims: tuple, long_name: str, dtype: str) -> Variable:
    return flag(name, dims, long_name, KV_MODES.values(), KV_MODES, dtype)


def partition_degrees(prefix: str, what: str, dims: tuple) -> dict[str, Variable]:
    """``<prefix><field>`` for every ``Partition`` field (int16; ``kv_mode`` a flag): the
    partition a result group picked."""
    out = {}
    for f in PARTITION_FIELDS:
        name = f"{prefix}{f}"
        if f == "kv_mode":
            out[name] = kv_mode_flag(name, dims, f"{what}: KV-parallel mode", "i2")
        else:
            out[name] = number(name, dims, "1", f"{what}: partition degree {f}", "i2")
    return out


def _by_name(*variables: Variable) -> dict[str, Variable]:
    return {v.name: v for v in variables}


# ---- the decode sweep: one value per grid point -------------------------------------------------
# units follow UDUNITS ("1" for counts, "s-1" for per-second rates)
STEP_COSTS = _by_name(  # physics.cost.StepCosts, at the winning partition
    number("throughput_per_gpu", POINT, "s-1", "decode tokens per second per GPU"),
    number("throughput", POINT, "s-1", "decode tokens per second per replica"),
    number("step_time", POINT, "s", "time of one decode step (per-token latency); inf where infeasible"),
    number("tokens_per_s_per_user", POINT, "s-1", "output tokens per second one sequence sees (interactivity)"),
    # components below are NaN where no candidate partition is feasible
    number("batch", POINT, "1", "sequences served concurrently per replica"),
    number("b_max", POINT, "1", "largest batch whose weights and KV cache fit in HBM"),
    flag("feasible", POINT, "point fits in memory under a legal partition", [0, 1], "infeasible feasible"),
    flag("bound", POINT, "what limits the step", range(len(BOUND_MEANINGS)), BOUND_MEANINGS),
    number("t_compute", POINT, "s", "compute time per step"),
    number("t_hbm", POINT, "s", "HBM traffic time per step"),
    number("t_comm", POINT, "s", "collective communication time per step, before overlap"),
    number("t_comm_exposed", POINT, "s", "communication time per step not hidden by overlap"),
    number(
        "reuse",
        POINT,
        "1",
        "the qs paper's reuse R = (B/pp)*k/E: tokens per expert per microbatch (below 1 when experts outnumber token choices)",
    ),
    number("memory_per_gpu", POINT, "byte", "HBM used per GPU: weights + KV cache + reserve"),
    number("weight_bytes_per_gpu", POINT, "byte", "resident weight bytes per GPU"),
    number("kv_bytes_per_gpu", POINT, "byte", "KV-cache bytes per GPU at the served batch"),
)
STEP_COSTS_NOT_STORED: dict[str, str] = {}  # StepCosts field -> why the dataset leaves it out (none today)

DEGREES = {  # the winning partition (not stored with keep_partitions: the partition table is)
    **{f: number(f, POINT, "1", f"winning partition: {f}", "i2") for f in PARTITION_FIELDS},
    "kv_mode": kv_mode_flag("kv_mode", POINT, "winning partition: KV-parallel mode", "i1"),
    "dense_tp": number(
        "dense_tp", POINT, "1", "winning partition: tensor-parallel degree of the dense FFN layers and LM head", "i2"
    ),
    "redundant_experts": number("redundant_experts", POINT, "1", "winning partition: redundant expert slots (EPLB copies)", "i2"),
}
ELASTICITIES = _by_name(
    *(  # sensitivities=true
        number(
            f"elasticity_{f}",
            POINT,
            "1",
            f"d log(throughput_per_gpu) / d log({f}) at the winning partition, continuous B_max (NaN where infeasible)",
        )
        for f in ELASTICITY_FIELDS
    )
)
PARTITIONS = {  # keep_partitions=true: every candidate, the per-point variables gain a partition axis
    "partition_valid": flag(
        "partition_valid", (*POINT, "partition"), "candidate is a legal split of the model", [0, 1], "illegal legal"
    ),
    **{
        f"partition_{f}": number(f"partition_{f}", ("num_gpus", "partition"), "1", f"candidate partition: {f}", "i4")
        for f in PARTITION_FIELDS
    },
}
BASELINE = _by_name(
    flag(
        "baseline_exists",
        ("model", "kappa"),
        "a dense model of kappa*rho*P_total params exists in the baseline family",
        [0, 1],
        "no_dense_baseline exists",
    )
)


def hardware_variable(field: dataclasses.Field) -> Variable:
    """``hw_<field>``: one ``HardwareSpec`` field per accelerator, labelled by the field's metadata."""
    return number(f"hw_{field.name}", ("hardware",), field.metadata["units"], field.metadata["long_name"], "f8")


HARDWARE = _by_name(*(hardware_variable(f) for f in dataclasses.fields(HardwareSpec)))
WORKLOADS = _by_name(  # grid.workloads: each context's request shape
    number("isl", ("context",), "1", "input (prompt) tokens per request", "f8"),
    number("osl", ("context",), "1", "output tokens per request", "f8"),
)
ECONOMICS = _by_name(
    number("hw_price_per_gpu_hour", ("hardware",), "USD", "price per GPU-hour (catalogue default or grid.economics)", "f8"),
    number("hw_board_power", ("hardware",), "W", "rated board power per GPU (catalogue default or grid.economics)", "f8"),
)


def economics_variables(prefix: str, dims: tuple) -> dict[str, Variable]:
    """``<prefix>cost_per_mtok`` and ``<prefix>joules_per_token``, beside ``<prefix>throughput_per_gpu``."""
    at = f"at {prefix}throughput_per_gpu (NaN: nothing served)"
    return _by_name(
        number(f"{prefix}cost_per_mtok", dims, "USD", f"US dollars per million output tokens {at}"),
        number(f"{prefix}joules_per_token", dims, "J", f"joules per output token (board power only) {at}"),
    )


INTERVAL_RULES = ("calibrated", "extrapolated", "none")  # analysis.validation.intervals.lookup's status
INTERVAL = flag(
    "interval",
    ("hardware",),
    "80 % prediction interval of this accelerator's predictions (why: the reasons attribute)",
    range(len(INTERVAL_RULES)),
    INTERVAL_RULES,
)


def interval_variables(name: str, dims: tuple, units: str) -> dict[str, Variable]:
    """``<name>_lo`` and ``<name>_hi``: the 80 % prediction interval of ``<name>`` (analysis/validation/sweep_intervals.py)."""
    return _by_name(
        number(f"{name}_lo", dims, units, f"lower end of the 80 % prediction interval of {name}"),
        number(f"{name}_hi", dims, units, f"upper end of the 80 % prediction interval of {name}"),
    )


QS = _by_name(  # the qs paper's Table 3 columns (analysis/qs.py)
    number("n_experts", ("model",), "1", "routed experts per MoE layer, E"),
    number("top_k", ("model",), "1", "experts chosen per token, k"),
    number("rho", ("model",), "1", "sparsity rho = k/E"),
    number("rho_kappa", ("model", "kappa"), "1", "qs product rho*kappa: below 1 the MoE moves more FFN weight bytes per token"),
    number("routing_factor", ("model",), "1", "routing factor E/k"),
    number("b_moe", QS_GRID, "1", "MoE batch B_MoE at its best partition (0 where infeasible)"),
    number("b_dense", QS_GRID, "1", "dense-baseline batch B_dense at its best partition (0 where infeasible)"),
    number("r_moe", QS_GRID, "1", "MoE weight reuse R_MoE = B_MoE*rho"),
    number("r_dense", QS_GRID, "1", "dense weight reuse R_dense = B_dense"),
    number("capacity_factor", QS_GRID, "1", "capacity factor B_dense/B_MoE (NaN unless both are feasible)"),
    number("reuse_gap", QS_GRID, "1", "total reuse gap R_dense/R_MoE = routing x capacity (NaN unless both are feasible)"),
    number("dense_moe_ratio", QS_GRID, "1", "dense over MoE throughput per GPU (NaN unless both are feasible)"),
)
KAPPA_STAR = _by_name(  # breakeven.include=true (analysis/breakeven.py), in the order its kernel returns them
    number(
        "kappa_star",
        GRID4,
        "1",
        "break-even quality factor: the kappa-matched dense baseline serves the MoE's throughput "
        "(bracketing bisection on the exact model, partition re-searched at each kappa; "
        "NaN unless reason == found)",
    ),
    number("kappa_star_optax", GRID4, "1", "kappa* by the optax solve on log kappa (diagnostic; see agrees)"),
    number(
        "ratio_at_kappa_star",
        GRID4,
        "1",
        "exact dense/MoE throughput ratio at kappa_star (near 1; far from 1, e.g. 0, "
        "where the crossing is a step: the dense baseline stops fitting, or its batch "
        "or partition jumps)",
    ),
    flag(
        "agrees",
        GRID4,
        "the optax diagnostic agrees with kappa_star within the tolerance",
        [0, 1],
        "optax_disagrees optax_agrees",
    ),
    flag(
        "reason",
        GRID4,
        "why kappa_star is or is not defined: found = crossing strictly inside [kappa_min, kappa_max]; "
        "below_kappa_min = the MoE is already ahead at kappa_min (raised to the smallest kappa whose "
        "baseline exists): kappa* < kappa_min; above_kappa_max = the dense baseline is still ahead at "
        "kappa_max: kappa* > kappa_max",
        range(len(REASONS)),
        REASONS,
    ),
    number("moe_throughput_per_gpu", GRID4, "s-1", "MoE decode tokens per second per GPU at its best partition"),
)
_LEVELS = (*GRID4, "interactivity")
KAPPA_STAR_FRONTIER = _by_name(  # breakeven.include=true with a frontier (analysis/frontier_breakeven.py), kernel order
    number(
        "kappa_star_frontier",
        _LEVELS,
        "1",
        (
            "break-even quality factor at each interactivity level: the kappa-matched dense baseline at its own frontier (best "
            "partition and batch reaching the level) serves the MoE's frontier throughput per GPU there (bracketing bisection "
            "on the exact model; NaN unless kappa_star_frontier_reason == found)"
        ),
    ),
    flag(
        "kappa_star_frontier_reason",
        _LEVELS,
        (
            "why kappa_star_frontier is or is not defined at this level: as reason; moe_infeasible = the MoE cannot reach the "
            "level here, dense_infeasible = the dense baseline cannot reach it even at kappa_min"
        ),
        range(len(REASONS)),
        REASONS,
    ),
    number(
        "dense_equivalent_params_frontier",
        _LEVELS,
        "1",
        (
            "dense-equivalent size at each interactivity level: parameters of the dense baseline at kappa_star_frontier, "
            "kappa*rho*P_total (every larger dense model costs more per token than the MoE there)"
        ),
    ),
    number(
        "ratio_at_kappa_star_frontier",
        _LEVELS,
        "1",
        ("exact dense/MoE frontier throughput ratio at kappa_star_frontier (near 1; far from 1 where the crossing is a step)"),
    ),
    number(
        "moe_frontier_throughput_per_gpu",
        _LEVELS,
        "s-1",
        ("the MoE's frontier at the level: its best decode tokens/s per GPU reaching it (NaN where it cannot)"),
    ),
)

SECTIONS = {  # title -> variables, in the order a sweep writes them (the frontier's groups come after DEGREES)
    "Step costs at the winning partition (`physics.cost.StepCosts`)": STEP_COSTS,
    "Winning partition": DEGREES,
    "Elasticities (`sensitivities=true`)": ELASTICITIES,
    "All candidates (`keep_partitions=true`)": PARTITIONS,
    "Dense baseline": BASELINE,
    "Accelerators (`physics.specs.HardwareSpec`)": HARDWARE,
    "Workloads (`grid.workloads`)": WORKLOADS,
    "Economics": {**ECONOMICS, **economics_variables("", POINT)},
    "Prediction intervals (an accounting preset with `intervals:`, e.g. the default `realistic`)": {
        "interval": INTERVAL,
        **interval_variables("step_time", POINT, "s"),
        **interval_variables("throughput_per_gpu", POINT, "s-1"),
    },
    "The qs paper's Table 3 columns": QS,
    "Break-even κ* (`breakeven.include=true`)": KAPPA_STAR,
    "Break-even κ*(interactivity) (`breakeven.include=true` with a frontier)": KAPPA_STAR_FRONTIER,
}
REGISTRY: dict[str, Variable] = {name: v for section in SECTIONS.values() for name, v in section.items()}


# ---- the serving frontier (engine/frontier.py): groups that depend on the grid ------------------
# flag variables: values, meanings (CF flag_meanings)
FRONTIER_STATUS = ([0, 1, 2], "infeasible unreachable reached")  # no candidate fits / none this fast / found
SLO_STATUS = ([0, 1, 2], "infeasible slo_not_met slo_met")
SERVING_STATUS = ([0, 1], "infeasible feasible")
AT_BATCH_STATUS = ([0, 1], "infeasible feasible")
SLO_MODE = ([0, 1, 2], "none aggregated disaggregated")  # which mode serves more tokens/s per GPU under the SLO


def _group(prefix: str, what: str, status: str, status_flags, dims: tuple, serve: bool = False) -> dict[str, Variable]:
    """The registry entries of one result group; ``serve``: a workload grid's (aggregated serving
    with chunked prefill, and TTFT)."""
    if serve:
        tput = "end-to-end output tokens per second per GPU, aggregated serving with chunked prefill"
        step = "mean time per output token after the first (TPOT: decode steps and steps carrying prompt chunks)"
    else:
        tput, step = "decode tokens per second per GPU", "time of one decode step"
    out = [
        number(f"{prefix}throughput_per_gpu", dims, "s-1", f"{what}: {tput} (NaN: see {prefix}{status})"),
        number(f"{prefix}tokens_per_s_per_user", dims, "s-1", f"{what}: output tokens per second one sequence sees"),
        number(f"{prefix}batch", dims, "1", f"{what}: sequences served concurrently per replica"),
        number(f"{prefix}step_time", dims, "s", f"{what}: {step}"),
    ]
    if serve:
        out.append(
            number(f"{prefix}ttft", dims, "s", f"{what}: mean time to first token, aggregated serving (physics/served.py)")
        )
    out.append(flag(f"{prefix}{status}", dims, f"{what}: outcome", *status_flags))
    return {**{v.name: v for v in out}, **partition_degrees(prefix, what, dims)}


def _disaggregated_group(prefix: str, what: str, dims: tuple) -> dict[str, Variable]:
    """The registry entries of the variables ``_disaggregated`` returns under ``prefix``."""
    out = [
        number(
            f"{prefix}disaggregated_throughput_per_gpu",
            dims,
            "s-1",
            f"{what}: end-to-end output tokens per second per GPU over both pools",
        ),
        number(
            f"{prefix}disaggregated_tokens_per_s_per_user", dims, "s-1", f"{what}: output tokens per second one sequence sees"
        ),
        number(f"{prefix}disaggregated_ttft", dims, "s", f"{what}: mean time to first token (prefill pass, queue, KV hand-off)"),
        number(f"{prefix}disaggregated_batch", dims, "1", f"{what}: sequences in flight per decode replica"),
        number(f"{prefix}prefill_share", dims, "1", f"{what}: fraction of the GPUs in the prefill pool"),
    ]
    out = {v.name: v for v in out}
    for pool in ("decode", "prefill"):
        out.update(partition_degrees(f"{prefix}{pool}_", f"{what}, {pool} pool", dims))
    return out


def frontier_variables(serve: bool, batches: bool, slo_rate: float, ttft_max: float) -> dict[str, Variable]:
    """The frontier's variables (``engine.frontier``), in the order its kernel returns them, for a
    grid with workloads (``serve``), ``grid.batches`` and an SLO (``slo_rate`` tokens/s per user,
    ``ttft_max`` s; 0: no limit): their dims are a point's, then ``interactivity`` or ``batches``."""
    with_slo = slo_rate > 0 or ttft_max > 0
    out = _group(
        "frontier_", "best at tokens/s per user >= interactivity", "status", FRONTIER_STATUS, (*POINT, "interactivity"), serve
    )
    if batches:
        at = _group("at_batch_", "best partition at this batch", "feasible", AT_BATCH_STATUS, (*POINT, "batches"), serve)
        at.pop("at_batch_batch")
        out.update(at)
    if with_slo:
        limits = [f"tokens/s per user >= {slo_rate:g}"] * (slo_rate > 0) + [f"TTFT <= {ttft_max:g} s"] * (ttft_max > 0)
        slo = f"best meeting the SLO ({', '.join(limits)})"
        out.update(_group("slo_", slo, "status", SLO_STATUS, POINT, serve))
        if serve:
            out.update(_disaggregated_group("slo_", f"disaggregated serving {slo}", POINT))
            out["slo_mode"] = flag(
                "slo_mode",
                POINT,
                "the serving mode with the most tokens/s per GPU under the SLO (the cheaper per token)",
                *SLO_MODE,
            )
    if serve:
        out.update(_group("serving_", "highest-throughput aggregated configuration", "status", SERVING_STATUS, POINT, serve))
        out.update(_disaggregated_group("serving_", "disaggregated serving at its highest decode throughput", POINT))
    return out


# ---- docs/dataset.md ----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _dims(v: Variable) -> str:
    return ", ".join(("point", *v.dims[len(POINT) :]) if v.dims[: len(POINT)] == POINT else v.dims)


def _table(variables) -> list[str]:
    lines = ["| name | dims | dtype | units or flags | long_name |", "|---|---|---|---|---|"]
    for v in variables:
        meaning = (
            ", ".join(f"{value} {word}" for value, word in zip(v.flag_values, v.flag_meanings.split()))
            if v.is_flag
            else f"`{v.units}`"
        )
        lines.append(f"| `{v.name}` | {_dims(v)} | {v.dtype} | {_cell(meaning)} | {_cell(v.long_name)} |")
    return lines


def markdown() -> str:
    """``docs/dataset.md``: every registered variable, the frontier's groups shown for an example grid."""
    lines = [
        "# Dataset schema",
        "",
        "<!-- generated by `python -m moejax.engine.variables --markdown > docs/dataset.md`; do not edit -->",
        "",
        "Every variable a sweep's `sweep.nc` can hold: name, dimensions, stored dtype (`float` is the sweep's",
        "precision: float32, or float64 with `precision=float64`), units (UDUNITS; `1` for counts and ratios) or,",
        "for a flag variable, its values and meanings (CF `flag_values`/`flag_meanings`), and `long_name`.",
        "Declared once in `moejax/engine/variables.py`. Dims: `point` is one grid point,",
        f"`{', '.join(POINT)}`; with `keep_partitions=true` every per-point variable gains a",
        "`partition` dimension.",
        "",
    ]
    for title, section in SECTIONS.items():
        lines += [f"## {title}", "", *_table(section.values()), ""]
    frontier = frontier_variables(serve=True, batches=True, slo_rate=20.0, ttft_max=2.0)
    lines += [
        "## Serving frontier (`grid.batches`, `grid.slo`, `grid.workloads`)",
        "",
        "Computed from the grid: shown for `grid.batches=[16]`, `grid.slo.tpot_max=0.05`, `grid.slo.ttft_max=2`",
        "and one workload (`grid.workloads`). Without workloads there are no `*_ttft`, `*disaggregated*`,",
        "`*_prefill_*`/`*_decode_*`, `slo_mode` or `serving_*` variables. Each `*throughput_per_gpu` has its",
        "`*cost_per_mtok` and `*joules_per_token` beside it (see Economics), and with an accounting preset",
        "that has intervals each `*ttft` has `*ttft_lo` and `*ttft_hi` beside it (see Prediction intervals).",
        "",
        *_table(frontier.values()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m moejax.engine.variables --markdown > docs/dataset.md")
    sys.stdout.write(markdown())
