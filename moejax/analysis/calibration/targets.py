"""Published targets: one printed number (``Target``), a reference file of them
(``Reference``, ``load_reference``) and the interval each printed number stands for."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from ...catalogue import ROOT, available, load_hardware, load_model
from ...physics.baseline import FAMILIES
from ...physics.specs import KV_MODES, Partition, SpecError

QUANTITIES = ("b_max", "relative_throughput", "relative_time")
COMPONENTS = ("hbm", "compute", "comm")
TARGET_FIELDS = (
    "id",
    "table",
    "row",
    "column",
    "quantity",
    "model",
    "variant",
    "kappa",
    "num_gpus",
    "context",
    "value",
    "oom",
    "normaliser",
    "duplicate_of",
    "component",
    "per",
    "decimals",
)


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
        half = 0.5 * 10.0**-self.decimals
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
    return Target(
        id=str(d["id"]),
        table=int(d["table"]),
        row=str(d["row"]),
        column=str(d["column"]),
        quantity=q,
        model=str(d["model"]),
        variant=d["variant"],
        kappa=float(d.get("kappa", 5.0)),
        num_gpus=int(d["num_gpus"]),
        context=float(d["context"]),
        value=float(d["value"]),
        oom=bool(d.get("oom", False)),
        normaliser=bool(d.get("normaliser", False)),
        duplicate_of=d.get("duplicate_of"),
        component=d.get("component"),
        per=d.get("per"),
        decimals=decimals,
    )


def resolve_path(path: str | Path) -> Path:
    """A path as given, else relative to the repository root (where ``conf/`` lives)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    return ROOT / p


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
            raise SpecError(
                f"{where} is invalid: keys are GPU counts, values mappings of degrees (tp, kvp, kv_mode, ep, pp, dp_attn)"
            )
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
            raise SpecError(
                f"reference {p.name}: target {t.id}: model = {t.model!r} is unknown: available {', '.join(available('model'))}"
            )
    overrides = dict(system.get("hardware_overrides") or {})
    load_hardware(str(hardware), **overrides)  # validates names and values (one-line SpecError)
    baseline = str(system.get("baseline", "keep-attention"))
    if baseline not in FAMILIES:
        raise SpecError(f"reference {p.name}: system.baseline = {baseline!r} is invalid: allowed {', '.join(FAMILIES)}")
    load_model(targets[0].model, **dict(system.get("dtypes") or {}))  # validates the dtype names
    return Reference(
        source=str(data.get("source", p)),
        hardware=str(hardware),
        hardware_overrides=overrides,
        dtypes=dict(system.get("dtypes") or {}),
        baseline=baseline,
        partitions=parts,
        targets=targets,
    )
