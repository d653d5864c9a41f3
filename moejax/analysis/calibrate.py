"""Calibration of the cost model's named accounting constants against published numbers.

A *calibration problem* is a table of published targets (``Target``: a number printed in a paper,
with its table, row and column) and a model of every target as a function of named free constants:
the array leaves of ``moejax.Accounting`` (``CONSTANTS``) plus ``weight_scale``, a multiplier on
resident weight bytes in the memory check that ``Accounting`` does not have (see below). Which
constants are free, which are only probed for identifiability, and the static accounting choices
(``expert_traffic`` "physical"/"paper-active"/"paper-pool", ``roofline`` "phase"/"global", the partition: the paper's
stated one or moejax's best-partition search) make one ``Fit``; a problem is a sequence of fits,
each able to inherit the fitted constants of an earlier one.

How a target is modelled (SI units inside, the paper's units outside):

- ``b_max``: admissible batch B in sequences at the point's partition, eq. 20
  ``B = dp_attn * floor((hbm_bytes*hbm_usable_fraction - reserve_bytes - weight_scale*W_gpu)
  / S_gpu)``, ``W_gpu`` resident weight bytes per GPU and ``S_gpu`` KV bytes per sequence per
  GPU (with ``kv_scale``), both from ``moejax.cost``; with ``weight_scale = 1`` it is exactly
  ``moejax.cost.batch_capacity``. A printed OOM is the bound B < 1.
- ``relative_throughput``: ``100 * tokens/s per GPU / (the normaliser point's)`` (percent), each
  point served at its own B_max by ``moejax.decode_point`` (the same GPU count, so per GPU or per
  cluster makes no difference).
- ``relative_time``: per-token cost of one component (``hbm``, ``compute`` or ``comm`` = exposed
  communication), GPU-seconds per generated token ``t_component * gpus_per_replica / B``, over
  the normaliser point's per-token compute.
- ``b_max`` is for the whole cluster: ``dp`` replicas times a replica's B_max (``dp = 1`` at the
  paper's partitions; the partition search may use replicas).

Constants are optimised in an unconstrained parametrisation (``CONSTANTS[name].transform``: logit
for fractions, log for positive scales, softplus with a unit for non-negative additive terms) by
optax (Adam, then L-BFGS). B_max is continuous during the fit (``Accounting(integer_batch=False)``)
so the loss has gradients; every reported prediction comes from the exact, integer-batch model.

The loss is the mean squared *log-distance* between prediction and the interval the printed
number stands for: a B is a floor (``[B, B+1)``), any other value is rounded at its printed
precision (214 -> [213.5, 214.5], 0.7 -> [0.65, 0.75]; a printed 0 -> below 0.5), each shrunk by
1% of its width so an accepted prediction prints unambiguously. It is zero only if every fitted
number is reproduced as printed; far from the interval it is the log-ratio predicted/published.
The residual table reports the plain relative residual predicted/published - 1.

Identifiability: ``J[i, j] = d log(prediction_i) / d theta_j`` over the fitted targets at the
optimum, theta being the transformed coordinate of each free or probed constant (a constant held
on the boundary of its transform, such as ``reserve_bytes = 0``, is differentiated in its unit
instead). Its singular values are reported, and every minimal set of constants whose
(unit-normalised) columns are linearly dependent, to ``rtol``, is named as an unidentifiable
combination: one direction in it changes no fitted prediction.

Worked example (tested): the qs paper's DeepSeek-V3 batches on 64 GPUs at its stated partition
TP8 x KVP8 (Table 4). moejax's physical default (all 180 GB usable, KV as stored) admits 18,707
MoE and 19,690 dense sequences at 1k context where the paper prints 31,349 and 34,263; fitting
``hbm_usable_fraction`` and ``kv_scale`` to the six B values at 1k-32k reproduces all six exactly:

>>> import jax; jax.config.update("jax_enable_x64", True)
>>> from moejax.analysis.calibrate import Fit, calibrate, load_reference
>>> ref = load_reference("sweeps/qs-paper/reference.yaml")
>>> fit = Fit("capacity", quantities=("b_max",), tables=(4,), free=("hbm_usable_fraction", "kv_scale"),
...           include=("t4.b.*.1k", "t4.b.*.16k", "t4.b.*.32k"))
>>> res = calibrate(ref, [fit])
>>> [int(v) for v in res.table["physical_default"][:2]], [int(v) for v in res.table["calibrated"][:2]]
([18707, 19690], [31349, 34263])
>>> bool(res.table["reproduced"].all()), res.fits[0].loss
(True, 0.0)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from .. import cost
from ..baseline import FAMILIES, dense_baseline
from ..catalogue import CONF_DIR, available, load_hardware, load_model
from ..grid import PartitionSpace, enumerate_partitions, partitions_from_table
from ..partition import partition_valid
from ..specs import EXPERT_TRAFFIC, KV_MODES, ROOFLINES, Accounting, Partition, SpecError, Workload

# ------------------------------------------------------------------------------------------------
# Named constants and their unconstrained parametrisation


@dataclasses.dataclass(frozen=True)
class Constant:
    """One named free constant: its domain, how it maps to an unconstrained ``theta``, its unit.

    ``domain`` is ``(low, high, low_closed, high_closed)``. Transforms: ``"logit"`` for the unit
    interval, ``"log"`` for positive scales, ``"softplus"`` (``value = unit * softplus(theta)``)
    for non-negative additive terms. A fitted value within 1e-9 (in its unit) of a closed end of
    its domain is set to that end and reported as "at its bound". ``init`` is where a fit starts
    when the problem gives no start (inside the open domain).
    """

    name: str
    domain: tuple
    transform: str
    unit: float
    unit_name: str
    init: float
    description: str

    def contains(self, v: float) -> bool:
        low, high, lc, hc = self.domain
        return (v >= low if lc else v > low) and (v <= high if hc else v < high)

    @property
    def rule(self) -> str:
        low, high, lc, hc = self.domain
        if high == math.inf:
            return f"{'>=' if lc else '>'} {low:g}"
        return f"in {'[' if lc else '('}{low:g}, {high:g}{']' if hc else ')'}"


UNIT, POSITIVE, NONNEGATIVE = (0.0, 1.0), (0.0, math.inf, False, False), (0.0, math.inf, True, False)
CONSTANTS = {c.name: c for c in (
    Constant("hbm_usable_fraction", (*UNIT, False, True), "logit", 1.0, "1", 0.9,
             "fraction of HBM capacity usable for weights + KV (effective capacity)"),
    Constant("reserve_bytes", NONNEGATIVE, "softplus", 1e9, "GB", 1e9, "bytes per GPU held back (activations, workspace)"),
    Constant("kv_scale", POSITIVE, "log", 1.0, "1", 1.0, "multiplier on stored and read KV bytes (KV accounting factor)"),
    Constant("routing_skew", (*UNIT, True, False), "logit", 1.0, "1", 0.1,
             "routing concentrates on E*(1-skew) experts (physical expert accounting only)"),
    Constant("overlap", (*UNIT, True, True), "logit", 1.0, "1", 0.5, "fraction of each phase's window that hides its collectives"),
    Constant("hbm_efficiency", (*UNIT, False, True), "logit", 1.0, "1", 0.9, "sustained / peak HBM bandwidth"),
    Constant("flops_efficiency", (*UNIT, False, True), "logit", 1.0, "1", 0.9, "sustained / peak FLOP/s"),
    Constant("layer_latency", NONNEGATIVE, "softplus", 1e-6, "us", 1e-6, "fixed overhead per layer per microbatch (s)"),
    Constant("weight_scale", POSITIVE, "log", 1.0, "1", 1.0,
             "multiplier on resident weight bytes in the memory check (not an Accounting leaf; b_max targets only)"),
)}
ACCOUNTING_CONSTANTS = tuple(f.name for f in dataclasses.fields(Accounting) if not f.metadata.get("static"))
assert set(ACCOUNTING_CONSTANTS) | {"weight_scale"} == set(CONSTANTS)
DEFAULTS = {**{f.name: float(f.default) for f in dataclasses.fields(Accounting) if not f.metadata.get("static")},
            "weight_scale": 1.0}
BOUND_TOL = 1e-9


def to_value(name: str, theta):
    """Constant value from its unconstrained coordinate ``theta``."""
    c = CONSTANTS[name]
    if c.transform == "logit":
        return jax.nn.sigmoid(theta)
    if c.transform == "log":
        return jnp.exp(theta)
    return c.unit * jax.nn.softplus(theta)


def to_theta(name: str, value: float) -> float:
    """Inverse of ``to_value`` (host float); a value on the boundary is nudged inside by 1e-9."""
    c = CONSTANTS[name]
    v = float(value)
    if c.transform == "logit":
        v = min(max(v, BOUND_TOL), 1 - BOUND_TOL)
        return math.log(v / (1 - v))
    if c.transform == "log":
        return math.log(v)
    x = max(v / c.unit, BOUND_TOL)
    return x + math.log(-math.expm1(-x))  # softplus^-1


def snap(name: str, value: float) -> tuple[float, bool]:
    """(value, at_bound): a value within ``BOUND_TOL`` units of a closed end of its domain is set
    to that end (a sigmoid or softplus only reaches it in the limit)."""
    c = CONSTANTS[name]
    low, high, lc, hc = c.domain
    if lc and value - low < BOUND_TOL * c.unit:
        return low, True
    if hc and high - value < BOUND_TOL * c.unit:
        return high, True
    return value, False


def theta_derivative(name: str, value: float) -> float:
    """``d value / d theta`` at ``value``: the column scale of the identifiability Jacobian. On the
    boundary of the transform (where it vanishes) the constant's unit is used instead."""
    c = CONSTANTS[name]
    v = float(value)
    if c.transform == "logit":
        d = v * (1 - v)
    elif c.transform == "log":
        d = v
    else:
        d = c.unit * -math.expm1(-v / c.unit)  # softplus' = sigmoid(theta) = 1 - exp(-x)
    return d if d > 1e-6 * c.unit else c.unit


def coordinate_name(name: str, value: float) -> str:
    """How the identifiability Jacobian's column for ``name`` is measured at ``value``."""
    c = CONSTANTS[name]
    if theta_derivative(name, value) == c.unit and c.transform != "log":
        return f"{name}/{c.unit_name}" if c.unit_name != "1" else name
    return {"logit": "logit ", "log": "log ", "softplus": "softplus^-1 "}[c.transform] + name


def check_constants(values: dict, where: str) -> None:
    """One-line ``SpecError`` for an unknown name or a value outside its constant's domain."""
    for name, v in values.items():
        if name not in CONSTANTS:
            raise SpecError(f"{where}.{name} is not a calibration constant: allowed {', '.join(CONSTANTS)}")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{where}.{name} = {v!r} is invalid: must be a finite number")
        if not CONSTANTS[name].contains(float(v)):
            raise SpecError(f"{where}.{name} = {v!r} is invalid: must be {CONSTANTS[name].rule}")


# ------------------------------------------------------------------------------------------------
# Published targets

QUANTITIES = ("b_max", "relative_throughput", "relative_time")
COMPONENTS = ("hbm", "compute", "comm")
TARGET_FIELDS = ("id", "table", "row", "column", "quantity", "model", "variant", "kappa", "num_gpus", "context", "value",
                 "oom", "normaliser", "duplicate_of", "component", "per", "decimals")


@dataclasses.dataclass(frozen=True)
class Target:
    """One published number. ``value`` in the paper's unit (sequences, percent, relative units);
    ``decimals`` is its printed precision (B values are floors, so theirs is unused); ``per`` names
    the normaliser point (``variant``, ``context``, and for ``relative_time`` its ``component``)
    for relative quantities; ``oom`` marks a printed OOM (B < 1)."""

    id: str
    table: int
    row: str
    column: str
    quantity: str
    model: str
    variant: str
    kappa: float
    num_gpus: int
    context: float
    value: float
    oom: bool = False
    normaliser: bool = False
    duplicate_of: str | None = None
    component: str | None = None
    per: dict | None = None
    decimals: int = 0

    @property
    def interval(self) -> tuple[float, float]:
        """(low, high) of what the printed number stands for, in its unit (low 0: a bound)."""
        if self.quantity == "b_max":
            return (0.0, 1.0) if self.oom else (self.value, self.value + 1.0)
        half = 0.5 * 10.0 ** -self.decimals
        return max(self.value - half, 0.0), self.value + half

    @property
    def aim(self) -> tuple[float, float]:
        """The interval the loss aims at: ``interval`` shrunk by 1% of its width at each closed
        end, so that a prediction the loss accepts prints unambiguously as the published number."""
        low, high = self.interval
        margin = 0.01 * (high - low)
        return (low + margin if low > 0 else 0.0), high - margin

    @property
    def printed(self) -> str:
        if self.oom:
            return "OOM"
        return f"{self.value:.{self.decimals}f}" if self.quantity != "b_max" else f"{int(self.value)}"

    def point(self) -> tuple:
        return _point_key(self.model, self.variant, self.kappa, self.num_gpus, self.context)

    def normaliser_point(self) -> tuple | None:
        if self.quantity == "b_max":
            return None
        return _point_key(self.model, self.per["variant"], self.kappa, self.num_gpus, float(self.per["context"]))


def _point_key(model, variant, kappa, num_gpus, context):
    return (model, variant, float(kappa) if variant == "dense" else None, int(num_gpus), float(context))


def _decimals(value) -> int:
    if isinstance(value, int):
        return 0
    text = repr(float(value))
    return 0 if "e" in text else len(text.split(".")[1].rstrip("0"))


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference file: the system the numbers were computed on, the paper's stated partitions
    (by GPU count) and the targets."""

    source: str
    hardware: str
    hardware_overrides: dict
    dtypes: dict
    baseline: str
    partitions: dict  # num_gpus -> {tp, kvp, kv_mode, ep, pp, dp_attn}
    targets: tuple[Target, ...]

    def target(self, tid: str) -> Target:
        return next(t for t in self.targets if t.id == tid)


def _need(where: str, d: dict, field: str):
    if field not in d:
        raise SpecError(f"{where}: {field} is missing: it is required")
    return d[field]


def parse_target(d: dict, where: str = "target") -> Target:
    """A ``Target`` from one YAML mapping; one-line ``SpecError`` naming the field on bad input."""
    if not isinstance(d, dict):
        raise SpecError(f"{where} = {d!r} is invalid: must be a mapping")
    where = f"{where} {d.get('id', '?')}"
    unknown = sorted(set(d) - set(TARGET_FIELDS))
    if unknown:
        raise SpecError(f"{where}: {unknown[0]} is not a known field: allowed {', '.join(TARGET_FIELDS)}")
    for f in ("id", "table", "row", "column", "quantity", "model", "variant", "num_gpus", "context", "value"):
        _need(where, d, f)
    if isinstance(d["table"], bool) or not isinstance(d["table"], int):
        raise SpecError(f"{where}: table = {d['table']!r} is invalid: must be the table's number")
    q = d["quantity"]
    if q not in QUANTITIES:
        raise SpecError(f"{where}: quantity = {q!r} is invalid: allowed {', '.join(QUANTITIES)}")
    if d["variant"] not in ("moe", "dense"):
        raise SpecError(f"{where}: variant = {d['variant']!r} is invalid: allowed moe, dense")
    for f in ("value", "context", "num_gpus", "kappa"):
        v = d.get(f, 5.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0 or (f != "value" and v == 0):
            raise SpecError(f"{where}: {f} = {v!r} is invalid: must be a {'non-negative' if f == 'value' else 'positive'} number")
    if int(d["num_gpus"]) != d["num_gpus"]:
        raise SpecError(f"{where}: num_gpus = {d['num_gpus']!r} is invalid: must be a positive integer")
    if q == "b_max" and not d.get("oom") and (int(d["value"]) != d["value"] or d["value"] < 1):
        raise SpecError(f"{where}: value = {d['value']!r} is invalid: a b_max is an integer >= 1 (or oom: true)")
    if q != "b_max":
        per = _need(where, d, "per")
        if not isinstance(per, dict) or per.get("variant") not in ("moe", "dense") or "context" not in per:
            raise SpecError(f"{where}: per = {per!r} is invalid: needs variant (moe/dense) and context")
        if q == "relative_time":
            for comp in (d.get("component"), per.get("component")):
                if comp not in COMPONENTS:
                    raise SpecError(f"{where}: component = {comp!r} is invalid: allowed {', '.join(COMPONENTS)}")
    decimals = int(d["decimals"]) if "decimals" in d else _decimals(d["value"])
    return Target(id=str(d["id"]), table=int(d["table"]), row=str(d["row"]), column=str(d["column"]), quantity=q,
                  model=str(d["model"]), variant=d["variant"], kappa=float(d.get("kappa", 5.0)), num_gpus=int(d["num_gpus"]),
                  context=float(d["context"]), value=float(d["value"]), oom=bool(d.get("oom", False)),
                  normaliser=bool(d.get("normaliser", False)), duplicate_of=d.get("duplicate_of"),
                  component=d.get("component"), per=d.get("per"), decimals=decimals)


def resolve_path(path: str | Path) -> Path:
    """A path as given, else relative to the repository root (where ``conf/`` lives)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    return CONF_DIR.parent / p


def load_reference(path: str | Path) -> Reference:
    """Read a reference YAML (see ``sweeps/qs-paper/reference.yaml``); one-line errors."""
    p = resolve_path(path)
    if not p.exists():
        raise SpecError(f"reference = {str(path)!r} is invalid: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"reference {p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SpecError(f"reference {p}: top level must be a mapping")
    system = _need(f"reference {p}", data, "system")
    hardware = _need(f"reference {p}: system", system, "hardware")
    if not str(hardware).endswith(".yaml") and hardware not in available("hardware"):
        raise SpecError(f"reference {p}: system.hardware = {hardware!r} is unknown: available {', '.join(available('hardware'))}")
    parts = {}
    for n, spec in (data.get("partitions") or {}).items():
        where = f"reference {p.name}: partitions.{n}"
        if not isinstance(n, int) or n < 1 or not isinstance(spec, dict):
            raise SpecError(f"{where} is invalid: keys are GPU counts, values mappings of degrees (tp, kvp, kv_mode, ep, pp, dp_attn)")
        unknown = sorted(set(spec) - {"tp", "kvp", "kv_mode", "ep", "pp", "dp_attn"})
        if unknown:
            raise SpecError(f"{where}.{unknown[0]} is not a known field: allowed tp, kvp, kv_mode, ep, pp, dp_attn")
        degrees = {}
        for f in ("tp", "kvp", "ep", "pp", "dp_attn"):
            v = spec.get(f, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"{where}.{f} = {v!r} is invalid: must be a positive integer")
            degrees[f] = float(v)
        mode = spec.get("kv_mode", "kvp" if degrees["kvp"] > 1 else "none")
        if mode not in KV_MODES:
            raise SpecError(f"{where}.kv_mode = {mode!r} is invalid: allowed {', '.join(KV_MODES)}")
        degrees["kv_mode"] = float(KV_MODES[mode])
        replica = degrees["tp"] * degrees["kvp"] * degrees["dp_attn"] * degrees["pp"]
        if n % replica:
            raise SpecError(f"{where} is invalid: tp*kvp*dp_attn*pp = {replica:g} does not divide {n} GPUs")
        try:
            Partition(**degrees, dp=n / replica)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None
        parts[n] = degrees
    raw = _need(f"reference {p}", data, "targets")
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"reference {p.name}: targets is invalid: a non-empty list of published numbers")
    targets = tuple(parse_target(t, f"reference {p.name}: target") for t in raw)
    ids = [t.id for t in targets]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise SpecError(f"reference {p.name}: target id {dup!r} is invalid: ids must be unique")
    for t in targets:
        if t.duplicate_of and t.duplicate_of not in ids:
            raise SpecError(f"reference {p.name}: target {t.id}: duplicate_of = {t.duplicate_of!r} is unknown")
        if t.model not in available("model"):
            raise SpecError(f"reference {p.name}: target {t.id}: model = {t.model!r} is unknown: available {', '.join(available('model'))}")
    overrides = dict(system.get("hardware_overrides") or {})
    load_hardware(str(hardware), **overrides)  # validates names and values (one-line SpecError)
    baseline = str(system.get("baseline", "keep-attention"))
    if baseline not in FAMILIES:
        raise SpecError(f"reference {p.name}: system.baseline = {baseline!r} is invalid: allowed {', '.join(FAMILIES)}")
    load_model(targets[0].model, **dict(system.get("dtypes") or {}))  # validates the dtype names
    return Reference(source=str(data.get("source", p)), hardware=str(hardware), hardware_overrides=overrides,
                     dtypes=dict(system.get("dtypes") or {}), baseline=baseline, partitions=parts, targets=targets)


# ------------------------------------------------------------------------------------------------
# Fits


@dataclasses.dataclass(frozen=True)
class Fit:
    """One fit of a calibration problem.

    Targets: those of ``quantities`` in ``tables`` (and, if ``include`` is given, whose id matches
    one of its glob patterns). ``exclude`` maps id globs to the reason they are reported but not
    fitted. ``free`` constants are optimised; ``probe`` constants are held at their value and only
    enter the identifiability analysis; ``fixed`` sets held values (others: ``Accounting``
    defaults, or the fitted values of the fit named by ``inherit``). ``partition`` is ``"paper"``
    (the reference's stated partition per GPU count; dense baselines with ep = 1) or ``"search"``
    (best feasible partition by throughput per GPU over ``search_space``, as ``moejax.grid``).
    ``init`` gives start values of free constants.
    """

    name: str
    quantities: tuple[str, ...] = QUANTITIES
    tables: tuple[int, ...] = ()
    include: tuple[str, ...] = ()
    exclude: dict = dataclasses.field(default_factory=dict)
    free: tuple[str, ...] = ()
    probe: tuple[str, ...] = ()
    fixed: dict = dataclasses.field(default_factory=dict)
    init: dict = dataclasses.field(default_factory=dict)
    inherit: str | None = None
    expert_traffic: str = "physical"
    roofline: str = "phase"
    partition: str = "paper"
    search_space: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def selects(self, t: Target) -> bool:
        if t.quantity not in self.quantities or (self.tables and t.table not in self.tables):
            return False
        return not self.include or any(fnmatch.fnmatchcase(t.id, pat) for pat in self.include)

    def exclusion(self, t: Target) -> str | None:
        return next((why for pat, why in self.exclude.items() if fnmatch.fnmatchcase(t.id, pat)), None)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Adam for ``adam_steps`` at ``learning_rate`` (in theta units), then up to ``lbfgs_steps``
    of L-BFGS; the best iterate is kept."""

    adam_steps: int = 300
    learning_rate: float = 0.05
    lbfgs_steps: int = 100


def check_fit(fit: Fit, ref: Reference, earlier: list[str]) -> None:
    where = f"fits.{fit.name}"
    for q in fit.quantities:
        if q not in QUANTITIES:
            raise SpecError(f"{where}.quantities = {q!r} is invalid: allowed {', '.join(QUANTITIES)}")
    if fit.expert_traffic not in EXPERT_TRAFFIC:
        raise SpecError(f"{where}.expert_traffic = {fit.expert_traffic!r} is invalid: allowed {', '.join(EXPERT_TRAFFIC)}")
    if fit.roofline not in ROOFLINES:
        raise SpecError(f"{where}.roofline = {fit.roofline!r} is invalid: allowed {', '.join(ROOFLINES)}")
    if fit.partition not in ("paper", "search"):
        raise SpecError(f"{where}.partition = {fit.partition!r} is invalid: allowed paper, search")
    for field in ("free", "probe"):
        for name in getattr(fit, field):
            if name not in CONSTANTS:
                raise SpecError(f"{where}.{field} = {name!r} is invalid: allowed {', '.join(CONSTANTS)}")
    if not fit.free:
        raise SpecError(f"{where}.free = [] is invalid: name at least one constant to fit")
    both = set(fit.free) & set(fit.probe)
    if both:
        raise SpecError(f"{where}.probe = {sorted(both)[0]!r} is invalid: already free")
    check_constants(dict(fit.fixed), f"{where}.fixed")
    check_constants(dict(fit.init), f"{where}.init")
    if fit.inherit is not None and fit.inherit not in earlier:
        raise SpecError(f"{where}.inherit = {fit.inherit!r} is invalid: must name an earlier fit ({', '.join(earlier) or 'none'})")
    targets = [t for t in ref.targets if fit.selects(t)]
    if not targets:
        raise SpecError(f"{where}: selects no target of the reference (quantities {list(fit.quantities)}, tables {list(fit.tables)})")
    if fit.partition == "paper":
        missing = sorted({t.num_gpus for t in targets} - set(ref.partitions))
        if missing:
            raise SpecError(f"{where}.partition = 'paper' is invalid: the reference states no partition for {missing[0]} GPUs")
    if any(t.quantity != "b_max" for t in targets) and ("weight_scale" in fit.free or fit.fixed.get("weight_scale", 1.0) != 1.0):
        raise SpecError(f"{where}.weight_scale is invalid here: it is not an Accounting constant, so it applies to b_max targets only")
    if fit.partition == "search":
        unknown = sorted(set(fit.search_space) - {f.name for f in dataclasses.fields(PartitionSpace)})
        if unknown:
            raise SpecError(f"{where}.search_space.{unknown[0]} is not a known field: allowed tp, ep, pp, dp_attn, kvp, kv_modes")
    _points(ref, fit, targets)  # catalogue entries, baselines and partitions: errors before any fitting


# ------------------------------------------------------------------------------------------------
# The model of every target


def batch_capacity(m, hw, p: Partition, context, acc: Accounting, weight_scale=1.0):
    """(B_max of one replica in sequences, headroom C/S in sequences per attention group) with
    resident weights counted ``weight_scale`` times (eq. 20).

    ``weight_scale = 1`` is ``moejax.cost.batch_capacity`` exactly. DeepSeek-V3 FP8 on the qs
    reference at TP8 x KVP8, 128k: (180 - 11.73) GB / 1.151 GB per sequence -> 146 sequences.
    """
    budget = hw.hbm_bytes * acc.hbm_usable_fraction - acc.reserve_bytes - weight_scale * cost.resident_weight_bytes(m, p)
    per_group = budget / cost.kv_bytes_per_sequence_gpu(m, p, context, acc)
    whole = jnp.floor(per_group) if acc.integer_batch else per_group
    return jnp.maximum(p.dp_attn * whole, 0.0), per_group


def _decode(m, hw, p, context, acc, weight_scale, integer):
    """``decode_point`` served at B_max and the cluster's concurrent sequences ``dp * B_max``.

    ``acc`` has continuous B (``integer_batch=False``); ``integer`` (traced 0/1) selects whole
    sequences per attention group, served as an explicit batch: exactly the model of
    ``Accounting(integer_batch=True)``, so one compiled program serves the fit and the report.
    """
    b_cont, per_group = batch_capacity(m, hw, p, context, acc, weight_scale)
    b_int = jnp.maximum(p.dp_attn * jnp.floor(per_group), 0.0)
    r = cost.decode_point(m, hw, p, Workload(context=context, batch=jnp.where(integer, b_int, 0.0)), acc)
    return r, p.dp * jnp.where(integer, b_int, b_cont), per_group


def _at(m, hw, p, context, acc, weight_scale, integer):
    """Every quantity a target can read at one point and partition, for the whole cluster of
    ``dp`` replicas: ``b_max`` concurrent sequences, ``throughput`` tokens/s per GPU, and per
    component GPU-seconds per generated token (``t * gpus_per_replica / B``)."""
    r, b_max, _ = _decode(m, hw, p, context, acc, weight_scale, integer)
    per_token = p.gpus_per_replica / jnp.maximum(r.batch, 1.0)
    return {"b_max": b_max, "throughput": r.throughput_per_gpu,
            "hbm": r.t_hbm * per_token, "compute": r.t_compute * per_token, "comm": r.t_comm_exposed * per_token,
            "feasible": r.feasible, "degrees": jnp.stack([p.tp, p.ep, p.pp, p.dp, p.dp_attn, p.kvp, p.kv_mode])}


def _searched(m, hw, table, mask, context, acc, weight_scale, integer):
    """``_at`` at the best feasible candidate by throughput per GPU (the argmax carries no
    gradient; the winner's quantities do). With no feasible candidate, ``b_max`` is the largest
    headroom C/S over legal candidates: below 1 exactly when no candidate fits one sequence (OOM)."""
    parts = partitions_from_table(table)

    def score(p, ok):
        r, _, per_group = _decode(m, hw, p, context, acc, weight_scale, integer)
        legal = ok & partition_valid(m, p)
        return jnp.where(legal & r.feasible, r.throughput_per_gpu, -1.0), jnp.where(legal, per_group, -1.0)

    s, caps = jax.vmap(score)(parts, mask)
    i = jnp.argmax(jax.lax.stop_gradient(s))
    found = s[i] > 0
    out = _at(m, hw, jax.tree_util.tree_map(lambda x: x[i], parts), context, acc, weight_scale, integer)
    out["b_max"] = jnp.where(found, out["b_max"], jnp.max(caps))
    out["degrees"] = out["degrees"] * found
    return out


@dataclasses.dataclass
class _Points:
    """The distinct evaluation points of a fit, stacked for ``vmap``."""

    keys: list
    rows: Any  # ModelSpec, leaves [n]
    contexts: np.ndarray
    partitions: Any  # paper: Partition leaves [n]; search: (table [n, P, F], mask [n, P])


_ROW_CACHE: dict = {}


def _row(ref: Reference, model: str, variant: str, kappa):
    key = (model, variant, kappa, tuple(sorted(ref.dtypes.items())), ref.baseline)
    if key not in _ROW_CACHE:
        m = load_model(model, **ref.dtypes)
        if variant == "dense":
            m = dense_baseline(m, kappa, ref.baseline)
        _ROW_CACHE[key] = jax.tree_util.tree_map(float, m)
    return _ROW_CACHE[key]


def _stack(specs):
    return jax.tree_util.tree_map(lambda *xs: np.array(xs, dtype=float), *specs)


def _points(ref: Reference, fit: Fit, targets: list[Target]) -> _Points:
    keys = []
    for t in targets:
        for k in (t.point(), t.normaliser_point()):
            if k is not None and k not in keys:
                keys.append(k)
    rows = _stack([_row(ref, k[0], k[1], k[2]) for k in keys])
    contexts = np.array([k[4] for k in keys])
    if fit.partition == "paper":
        parts = []
        for k in keys:
            spec = dict(ref.partitions[k[3]])
            if k[1] == "dense":
                spec["ep"] = 1.0
            spec["dp"] = k[3] / (spec["tp"] * spec["kvp"] * spec["dp_attn"] * spec["pp"])
            parts.append(Partition(**spec))
        return _Points(keys, rows, contexts, _stack(parts))
    space = PartitionSpace(**{k: tuple(v) for k, v in fit.search_space.items()})
    gpus = sorted({k[3] for k in keys})
    tables = {n: enumerate_partitions(n, space) for n in gpus}
    for n, t in tables.items():
        if not len(t):
            raise SpecError(f"fits.{fit.name}.search_space is invalid: no partition divides {n} GPUs")
    width = max(len(t) for t in tables.values())
    table = np.stack([np.concatenate([tables[k[3]], np.repeat(tables[k[3]][:1], width - len(tables[k[3]]), 0)]) for k in keys])
    mask = np.stack([np.arange(width) < len(tables[k[3]]) for k in keys])
    return _Points(keys, rows, contexts, (table, mask))


def _evaluator(fit: Fit, hw, pts: _Points):
    """``f(constants dict, integer) -> per-point quantities``, jitted, for one fit's points;
    ``integer`` 0: continuous B_max (the fit), 1: whole sequences (the exact model, reported)."""
    static = {"expert_traffic": fit.expert_traffic, "roofline": fit.roofline, "integer_batch": False}

    def f(consts, integer):
        acc = Accounting(**{k: consts[k] for k in ACCOUNTING_CONSTANTS}, **static)
        w = consts["weight_scale"]
        if fit.partition == "paper":
            return jax.vmap(lambda m, p, c: _at(m, hw, p, c, acc, w, integer))(pts.rows, pts.partitions, pts.contexts)
        table, mask = pts.partitions
        return jax.vmap(lambda m, t, k, c: _searched(m, hw, t, k, c, acc, w, integer))(pts.rows, table, mask, pts.contexts)

    return jax.jit(f)


def _predict(targets: list[Target], pts: _Points, q: dict):
    """Each target's prediction in its published unit from per-point quantities ``q``."""
    index = {k: i for i, k in enumerate(pts.keys)}
    out = []
    for t in targets:
        i = index[t.point()]
        if t.quantity == "b_max":
            out.append(q["b_max"][i])
        elif t.quantity == "relative_throughput":
            out.append(100.0 * q["throughput"][i] / q["throughput"][index[t.normaliser_point()]])
        else:
            out.append(q[t.component][i] / q[t.per["component"]][index[t.normaliser_point()]])
    return jnp.stack(out)


TINY = 1e-300


def interval_residual(pred, low, high):
    """Log-distance from ``pred`` to ``[low, high]`` (0 inside; ``low = 0``: an upper bound)."""
    lp = jnp.log(jnp.maximum(pred, TINY))
    lo = jnp.where(low > 0, jnp.log(jnp.maximum(low, TINY)), -jnp.inf)
    return jnp.where(lp < lo, lp - lo, jnp.where(lp > jnp.log(high), lp - jnp.log(high), 0.0))


def log_residual(t: Target, pred: float) -> float:
    """Plain log(predicted / published); for a printed bound (OOM, 0) the excess over the bound."""
    if t.oom or (t.quantity != "b_max" and t.value == 0):
        return math.log(max(pred, t.interval[1]) / t.interval[1])
    return math.log(pred / t.value) if pred > 0 else -math.inf


def reproduced(t: Target, pred: float) -> bool:
    """The prediction prints as the published number (B: equal floor; values: same rounding)."""
    low, high = t.interval
    if t.quantity == "b_max":
        return pred < 1 if t.oom else pred == t.value
    return (low <= pred <= high) if low > 0 or t.value > 0 else pred < high


# ------------------------------------------------------------------------------------------------
# Running a fit


@dataclasses.dataclass
class FitResult:
    """One fit's outcome: ``constants`` (every constant's value used, fitted or held), ``fitted``
    (the free ones), loss, identifiability (singular values over free + probed coordinates,
    ``unidentifiable`` combinations and their null vectors) and per-target predictions."""

    fit: Fit
    constants: dict
    fitted: dict
    loss: float
    loss_start: float
    coordinates: list
    jacobian: np.ndarray
    singular_values: np.ndarray
    unidentifiable: list
    null_vectors: list
    targets: list
    fitted_mask: np.ndarray
    notes: list
    calibrated: np.ndarray
    default: np.ndarray
    partitions: list
    at_bound: list
    rms_log_residual: float = math.nan


def _constants_dict(values: dict, dtype=jnp.float64) -> dict:
    return {k: jnp.asarray(v, dtype) for k, v in values.items()}


def circuits(jac: np.ndarray, names: list[str], rtol: float) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Minimal sets of columns of ``jac`` that are linearly dependent to ``rtol`` (columns scaled
    to unit norm; a column below ``rtol`` of the largest is dependent on its own), each with its
    null vector (in the original column coordinates, unit norm).

    >>> j = np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    >>> [c for c, _ in circuits(j, ["a", "b", "c"], 1e-9)]
    [(2,), (0, 1)]
    """
    norms = np.linalg.norm(jac, axis=0)
    big = norms.max() if norms.size and norms.max() > 0 else 1.0
    found: list = []
    n = jac.shape[1]
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            if any(set(c).issubset(subset) for c, _ in found):
                continue
            if size == 1:
                if norms[subset[0]] <= rtol * big:
                    v = np.zeros(n)
                    v[subset[0]] = 1.0
                    found.append((subset, v))
                continue
            cols = jac[:, subset] / norms[list(subset)]
            _, s, vt = np.linalg.svd(cols, full_matrices=False) if cols.shape[0] >= size else np.linalg.svd(
                np.vstack([cols, np.zeros((size - cols.shape[0], size))]), full_matrices=False)
            if s[-1] <= rtol * s[0]:
                v = np.zeros(n)
                v[list(subset)] = vt[-1] / norms[list(subset)]
                found.append((subset, v / np.linalg.norm(v)))
    return found


def predict(ref: Reference, fit: Fit, constants: dict | None = None, integer: bool = True) -> tuple[list[Target], np.ndarray]:
    """(targets, predictions) for every target ``fit`` selects, in the published units, with
    ``constants`` (others at their ``Accounting`` defaults); ``integer=False``: continuous B_max
    (the model the fit optimises). Synthetic targets for a recovery test come from here."""
    check_constants(dict(constants or {}), "constants")
    targets = [t for t in ref.targets if fit.selects(t)]
    pts = _points(ref, fit, targets)
    q = _evaluator(fit, load_hardware(ref.hardware, **ref.hardware_overrides), pts)(
        _constants_dict({**DEFAULTS, **(constants or {})}), integer)
    return targets, np.asarray(_predict(targets, pts, q))


def run_fit(ref: Reference, fit: Fit, hw, held: dict, optimizer: Optimizer, rtol: float) -> FitResult:
    """Fit ``fit.free`` (others held at ``held``), then evaluate and analyse at the optimum."""
    all_targets = [t for t in ref.targets if fit.selects(t)]
    notes, use = [], []
    for t in all_targets:
        why = fit.exclusion(t)
        if t.normaliser:
            why = "normaliser: equal to the printed value by definition"
        elif t.duplicate_of:
            why = f"printed twice: fitted as {t.duplicate_of}"
        notes.append(why or "")
        use.append(why is None)
    use = np.array(use)
    if not use.any():
        raise SpecError(f"fits.{fit.name}: every selected target is excluded: nothing to fit")
    pts = _points(ref, fit, all_targets)
    evaluate = _evaluator(fit, hw, pts)
    smooth = functools.partial(evaluate, integer=False)
    exact = functools.partial(evaluate, integer=True)
    fitted_targets = [t for t, u in zip(all_targets, use) if u]
    low = jnp.array([t.aim[0] for t in fitted_targets])
    high = jnp.array([t.aim[1] for t in fitted_targets])
    held = {**DEFAULTS, **held, **fit.fixed}
    free = list(fit.free)

    def values(theta):
        return {**_constants_dict(held), **{k: to_value(k, theta[i]) for i, k in enumerate(free)}}

    @jax.jit
    def loss(theta):
        pred = _predict(fitted_targets, pts, smooth(values(theta)))
        return jnp.mean(interval_residual(pred, low, high) ** 2)

    start = {k: fit.init.get(k, CONSTANTS[k].init) for k in free}
    theta0 = jnp.array([to_theta(k, start[k]) for k in free])
    theta = _optimise(loss, theta0, optimizer)
    snapped = {k: snap(k, float(to_value(k, theta[i]))) for i, k in enumerate(free)}
    fitted = {k: v for k, (v, _) in snapped.items()}
    at_bound = [k for k, (_, b) in snapped.items() if b]
    constants = {**held, **fitted}

    # identifiability over free + probed coordinates, at the optimum
    names = free + [k for k in fit.probe]
    point = np.array([constants[k] for k in names])
    scale = np.array([theta_derivative(k, constants[k]) for k in names])

    def log_pred(x):
        pred = _predict(fitted_targets, pts, smooth({**_constants_dict(constants), **{k: x[i] for i, k in enumerate(names)}}))
        return jnp.log(jnp.maximum(pred, TINY))

    jac = np.asarray(jax.jit(jax.jacfwd(log_pred))(jnp.asarray(point))) * scale[None, :]
    jac = np.where(np.isfinite(jac), jac, 0.0)
    sv = np.linalg.svd(jac, compute_uv=False) if jac.size else np.zeros(0)
    found = circuits(jac, names, rtol)
    coords = [coordinate_name(k, constants[k]) for k in names]
    unident = [" ~ ".join(names[i] for i in c) for c, _ in found]

    q_exact = exact(_constants_dict(constants))
    calibrated = np.asarray(_predict(all_targets, pts, q_exact))
    same = fit.expert_traffic == "physical" and fit.roofline == "phase"
    physical = evaluate if same else _evaluator(dataclasses.replace(fit, expert_traffic="physical", roofline="phase"), hw, pts)
    q_default = physical(_constants_dict(DEFAULTS), True)
    default = np.asarray(_predict(all_targets, pts, q_default))
    degrees = np.asarray(q_exact["degrees"])
    index = {k: i for i, k in enumerate(pts.keys)}
    partitions = [_partition_label(degrees[index[t.point()]]) for t in all_targets]
    final = float(loss(theta))
    return FitResult(fit=fit, constants=constants, fitted=fitted, loss=final, loss_start=float(loss(theta0)), coordinates=coords, jacobian=jac, singular_values=sv,
        unidentifiable=unident, null_vectors=[v for _, v in found], targets=all_targets, fitted_mask=use, notes=notes,
        calibrated=calibrated, default=default, partitions=partitions, at_bound=at_bound)


def _partition_label(d) -> str:
    tp, ep, pp, dp, dp_attn, kvp, mode = (int(round(float(x))) for x in d)
    if tp == 0:
        return "none feasible"
    parts = [f"TP{tp}", f"EP{ep}"]
    if kvp > 1:
        parts.append(f"{'KVP' if mode == 1 else 'CP'}{kvp}")
    for name, v in (("DPattn", dp_attn), ("PP", pp), ("DP", dp)):
        if v > 1:
            parts.append(f"{name}{v}")
    return "x".join(parts)


def _optimise(loss, theta, opt: Optimizer):
    """Adam then L-BFGS on ``loss(theta)`` (jitted); returns the best iterate seen. Adam runs as
    Python steps around one compiled value-and-gradient; L-BFGS as one compiled scan."""
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    best_theta, best = theta, math.inf

    def keep(theta, v):
        nonlocal best, best_theta
        if math.isfinite(v) and v < best:
            best, best_theta = v, theta

    v, g = value_and_grad(theta)
    keep(theta, float(v))
    if opt.adam_steps > 0 and best > 0:
        adam = optax.adam(opt.learning_rate)
        state = adam.init(theta)
        update = jax.jit(adam.update)
        for _ in range(opt.adam_steps):
            upd, state = update(jnp.where(jnp.isfinite(g), g, 0.0), state, theta)
            theta = optax.apply_updates(theta, upd)
            v, g = value_and_grad(theta)
            keep(theta, float(v))
            if best == 0.0:
                break
    if opt.lbfgs_steps > 0 and best > 0:
        solver = optax.lbfgs()

        @jax.jit
        def lbfgs_steps(theta):
            def body(carry, _):
                theta, state = carry
                v, g = optax.value_and_grad_from_state(loss)(theta, state=state)
                upd, state = solver.update(g, state, theta, value=v, grad=g, value_fn=loss)
                return (optax.apply_updates(theta, upd), state), (v, theta)
            (theta, _), (vs, thetas) = jax.lax.scan(body, (theta, solver.init(theta)), None, length=opt.lbfgs_steps)
            return theta, vs, thetas

        last, vs, thetas = lbfgs_steps(best_theta)
        vs = np.asarray(vs)
        if np.isfinite(vs).any():
            i = int(np.nanargmin(np.where(np.isfinite(vs), vs, np.inf)))
            keep(thetas[i], float(vs[i]))
        keep(last, float(loss(last)))
    return best_theta


# ------------------------------------------------------------------------------------------------
# A whole problem


RESIDUAL_FIELDS = [("fit", "U24"), ("id", "U32"), ("table", "i4"), ("row", "U40"), ("column", "U24"), ("quantity", "U20"),
                   ("published", "f8"), ("printed", "U12"), ("physical_default", "f8"), ("calibrated", "f8"),
                   ("rel_residual_default", "f8"), ("rel_residual_calibrated", "f8"), ("log_residual_calibrated", "f8"),
                   ("reproduced", "?"), ("fitted", "?"), ("partition", "U40"), ("note", "U600")]


@dataclasses.dataclass
class CalibrationResult:
    """All fits of a problem: ``fits`` (``FitResult`` in order), ``table`` (structured array, one
    row per target and fit: ``RESIDUAL_FIELDS``), ``constants`` (the fitted value of every free
    constant, later fits winning), ``rms_log_residual`` (over fitted targets, exact model) and
    ``unidentifiable`` ("fit: a ~ b" strings)."""

    reference: Reference
    fits: list
    table: np.ndarray
    constants: dict
    rms_log_residual: float
    unidentifiable: list


def _relative(t: Target, pred: float) -> float:
    if t.oom or t.value == 0:
        return math.nan
    return pred / t.value - 1.0


def calibrate(ref: Reference, fits: list[Fit], optimizer: Optimizer | None = None, rtol: float = 1e-6) -> CalibrationResult:
    """Run ``fits`` in order against ``ref`` and collect the residual table.

    Errors in the problem (names, domains, an empty selection) are one-line ``SpecError``s raised
    before any fitting.
    """
    optimizer = optimizer or Optimizer()
    names = []
    for fit in fits:
        if fit.name in names:
            raise SpecError(f"fits.{fit.name} is invalid: fit names must be unique")
        check_fit(fit, ref, names)
        names.append(fit.name)
    hw = load_hardware(ref.hardware, **ref.hardware_overrides)
    results: dict[str, FitResult] = {}
    for fit in fits:
        held = dict(results[fit.inherit].constants) if fit.inherit else {}
        results[fit.name] = run_fit(ref, fit, hw, held, optimizer, rtol)
    rows, logs = [], []
    for r in results.values():
        mine = []
        for t, use, note, cal, dflt, part in zip(r.targets, r.fitted_mask, r.notes, r.calibrated, r.default, r.partitions):
            lr = log_residual(t, float(cal)) if float(cal) > 0 or t.oom or t.value == 0 else -math.inf
            if use:
                mine.append(lr)
                logs.append(lr)
            rows.append((r.fit.name, t.id, t.table, t.row, t.column, t.quantity, t.value, t.printed, float(dflt), float(cal),
                         _relative(t, float(dflt)), _relative(t, float(cal)), lr, reproduced(t, float(cal)), bool(use), part, note))
        r.rms_log_residual = float(np.sqrt(np.mean(np.square(mine))))
    table = np.array(rows, dtype=RESIDUAL_FIELDS)
    logs = np.array(logs)
    rms = float(np.sqrt(np.mean(logs**2))) if logs.size else math.nan
    constants = {}
    for r in results.values():
        constants.update(r.fitted)
    unident = [f"{r.fit.name}: {u}" for r in results.values() for u in r.unidentifiable]
    return CalibrationResult(ref, list(results.values()), table, constants, rms, unident)


def fit_from_config(name: str, cfg: dict) -> Fit:
    """A ``Fit`` from a plain mapping (the ``fits.<name>`` node of ``conf/calibrate.yaml``)."""
    known = {f.name for f in dataclasses.fields(Fit)} - {"name"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise SpecError(f"fits.{name}.{unknown[0]} is not a known field: allowed {', '.join(sorted(known))}")
    out = {}
    for k, v in cfg.items():
        if k in ("quantities", "include", "free", "probe", "tables"):
            if not isinstance(v, list | tuple):
                raise SpecError(f"fits.{name}.{k} = {v!r} is invalid: must be a list")
            v = tuple(v) if k == "tables" else tuple(str(x) for x in v)
            if k == "tables" and any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                raise SpecError(f"fits.{name}.tables = {list(v)!r} is invalid: must be table numbers")
        elif k in ("exclude", "fixed", "init", "search_space"):
            if not isinstance(v, dict | type(None)):
                raise SpecError(f"fits.{name}.{k} = {v!r} is invalid: must be a mapping")
            v = dict(v or {})
        elif k in ("expert_traffic", "roofline", "partition", "description") or (k == "inherit" and v is not None):
            v = str(v)
        out[k] = v
    return Fit(name=name, **out)
