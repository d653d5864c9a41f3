"""Measured serving results: load a measurement YAML and check every entry at the edge.

The format is ``moejax/data/reference/serving/README.md`` (a list of entries: id, source, firmness,
model, hardware, num_gpus, partition, dtypes, phase, batch, context, mtp, measured, usable,
notes, and an optional ``serving`` block for serving-benchmark measurements: mode agg|disagg,
isl, osl, concurrency, ttft). Every bad input is ONE line ``SpecError`` naming the file, the entry id, the field, the
bad value and what is allowed. Units are SI: seconds, tokens/s; context in tokens.

Entries with ``usable: false`` are checked for structure only (known fields, an id): their
conditions are by definition too unclear to check, and they are reported as skipped, never
evaluated.

Decode consistency (README): with ``T = 1 + mtp.accepted`` tokens per step (1 without MTP),
``tokens_per_s_per_user = T / step_time`` and ``throughput_per_gpu = batch * T / (step_time *
num_gpus)``; any two given figures must agree within ``CONSISTENCY_TOLERANCE`` (2 %). Example:
DeepSeek's production decode, 12,686 sequences on 144 GPUs at 21.0 tokens/s each, implies
12,686 * 21.0 / 144 = 1,850.0 tokens/s per GPU, as published.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from ...catalogue import DTYPE_BYTES
from ...catalogue.files import load_yaml
from ...physics.specs import SpecError
from . import readings

FIELDS_REQUIRED = (
    "id",
    "source",
    "firmness",
    "model",
    "hardware",
    "num_gpus",
    "partition",
    "dtypes",
    "phase",
    "batch",
    "context",
    "measured",
)
FIELDS_OPTIONAL = ("mtp", "usable", "notes", "serving")
FIRMNESS = ("exact", "prose", "loose", "peer-model")
PHASES = ("decode", "prefill")
PARTITION_KEYS = ("tp", "ep", "pp", "dp_attn", "kvp")
DTYPE_KEYS = ("weights", "experts", "kv", "activations")
DTYPE_REQUIRED = ("weights", "kv", "activations")  # experts defaults to weights
FIGURES = ("step_time", "tokens_per_s_per_user", "throughput_per_gpu")  # residual on the first one given
FIGURE_UNITS = {"step_time": "s", "tokens_per_s_per_user": "tokens/s", "throughput_per_gpu": "tokens/s/GPU"}
MTP_KEYS = ("draft_tokens", "accepted")
SERVING_KEYS = ("mode", "isl", "osl", "concurrency", "ttft")
SERVING_MODES = ("agg", "disagg")
CONSISTENCY_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One checked entry. ``partition`` has every key of ``PARTITION_KEYS`` (omitted = 1);
    ``dtypes`` every key of ``DTYPE_KEYS`` (experts defaults to weights); ``batch`` is a positive
    int or ``"max"``; ``mtp`` is ``None`` or ``{draft_tokens, accepted}``; ``measured`` maps each
    of ``FIGURES`` to a float in SI units or ``None``. Unusable entries keep their raw values."""

    id: str
    source: str
    firmness: str
    model: str
    hardware: str
    num_gpus: int | None
    partition: dict | None
    dtypes: dict | None
    phase: str
    batch: int | str | None
    context: float | None
    measured: dict
    mtp: dict | None = None
    serving: dict | None = None  # {mode, isl, osl, concurrency (int or None), ttft (s or None)}
    requests: int | None = None  # an offline run's request count, read from the notes (readings.py)
    two_batch_overlap: bool = False  # two micro-batches hide the collectives, read from the notes (readings.py)
    usable: bool = True
    notes: str = ""
    where: str = ""  # "FILE: entry 'ID'", the prefix of any later error about this entry

    @property
    def tokens_per_step(self) -> float:
        """Output tokens per sequence per decode step: ``1 + mtp.accepted`` (1 without MTP)."""
        return 1.0 + (self.mtp["accepted"] if self.mtp else 0.0)

    @property
    def figure(self) -> str:
        """The figure the residual is taken on: the first of ``FIGURES`` that is given."""
        return next(f for f in FIGURES if self.measured.get(f) is not None)

    @property
    def value(self) -> float:
        return self.measured[self.figure]


class _Entry:
    """Error context for one entry: ``fail(field, value, allowed)`` raises the one-line error."""

    def __init__(self, path: Path, index: int, eid):
        self.where = f"{path}: entry {eid!r}" if isinstance(eid, str) and eid else f"{path}: entry #{index + 1}"

    def fail(self, field: str, value, allowed: str):
        raise SpecError(f"{self.where}: {field} = {value!r} is invalid: {allowed}")

    def number(self, field: str, value, integer: bool = False, positive: bool = True) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > 0 if positive else value >= 0) and (not integer or float(value).is_integer())
        if not ok:
            kind = "an integer" if integer else "a number"
            self.fail(field, value, f"must be {kind} {'> 0' if positive else '>= 0'}")
        return int(value) if integer else float(value)

    def mapping(self, field: str, value, keys: tuple[str, ...], nullable: bool = True) -> dict:
        if value is None and nullable:
            return {}
        if not isinstance(value, dict):
            self.fail(field, value, f"must be a mapping with keys among {', '.join(keys)}")
        unknown = sorted(str(k) for k in value if k not in keys)
        if unknown:
            raise SpecError(f"{self.where}: {field}.{unknown[0]} is not a known field: allowed {', '.join(keys)}")
        return value


def read_yaml(path: Path):
    """The parsed YAML of ``path``; a missing file or malformed YAML is one line naming path and line."""
    if not path.is_file():
        raise SpecError(f"measurements = {str(path)!r} is invalid: the file does not exist")
    try:
        return load_yaml(path)  # size, depth and alias-expanded node count checked first
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}{line}: malformed YAML: {problem}") from None


def _check_fields(e: _Entry, raw: dict) -> None:
    unknown = sorted(str(k) for k in raw if k not in FIELDS_REQUIRED + FIELDS_OPTIONAL)
    if unknown:
        raise SpecError(f"{e.where}: {unknown[0]} is not a known field: allowed {', '.join(FIELDS_REQUIRED + FIELDS_OPTIONAL)}")
    for field in FIELDS_REQUIRED:
        if field not in raw:
            raise SpecError(f"{e.where}: {field} is missing: it is required (null where not published)")


def _check_measured(e: _Entry, raw) -> dict:
    measured = e.mapping("measured", raw, FIGURES, nullable=False)
    out = {f: None if measured.get(f) is None else e.number(f"measured.{f}", measured[f]) for f in FIGURES}
    if all(v is None for v in out.values()):
        e.fail("measured", raw, f"needs at least one of {', '.join(FIGURES)}")
    return out


def _check_mtp(e: _Entry, raw) -> dict | None:
    if raw is None:
        return None
    mtp = e.mapping("mtp", raw, MTP_KEYS, nullable=False)
    for key in MTP_KEYS:
        if mtp.get(key) is None:
            raise SpecError(f"{e.where}: mtp.{key} is missing: mtp needs draft_tokens and accepted (or mtp: null)")
    draft = e.number("mtp.draft_tokens", mtp["draft_tokens"], integer=True)
    accepted = e.number("mtp.accepted", mtp["accepted"], positive=False)
    if accepted > draft:
        e.fail("mtp.accepted", mtp["accepted"], f"must not exceed mtp.draft_tokens = {draft}")
    return {"draft_tokens": draft, "accepted": accepted}


def _check_serving(e: _Entry, raw) -> dict | None:
    """The ``serving`` block of a serving-benchmark entry: mode, isl and osl required (tokens > 0);
    concurrency a positive integer or null (not published / saturated pool); ttft seconds > 0 or null."""
    if raw is None:
        return None
    block = e.mapping("serving", raw, SERVING_KEYS, nullable=False)
    for key in ("mode", "isl", "osl"):
        if block.get(key) is None:
            raise SpecError(f"{e.where}: serving.{key} is missing: a serving block needs mode, isl and osl")
    if block["mode"] not in SERVING_MODES:
        e.fail("serving.mode", block["mode"], f"allowed {', '.join(SERVING_MODES)}")
    concurrency = block.get("concurrency")
    ttft = block.get("ttft")
    return {
        "mode": block["mode"],
        "isl": e.number("serving.isl", block["isl"]),
        "osl": e.number("serving.osl", block["osl"]),
        "concurrency": None if concurrency is None else e.number("serving.concurrency", concurrency, integer=True),
        "ttft": None if ttft is None else e.number("serving.ttft", ttft),
    }


def check_consistency(e: _Entry, m: Measurement) -> None:
    """Decode figures that two of three determine must agree within ``CONSISTENCY_TOLERANCE``."""
    if m.phase != "decode":
        return
    t, st, tpu, tpg = (
        m.tokens_per_step,
        m.measured["step_time"],
        m.measured["tokens_per_s_per_user"],
        m.measured["throughput_per_gpu"],
    )
    per_gpu = m.batch / m.num_gpus if isinstance(m.batch, int) else None
    pairs = [("tokens_per_s_per_user", tpu, "step_time", None if st is None else t / st, "tokens_per_step / step_time")]
    if per_gpu is not None:
        pairs += [
            (
                "throughput_per_gpu",
                tpg,
                "step_time",
                None if st is None else per_gpu * t / st,
                "batch * tokens_per_step / (step_time * num_gpus)",
            ),
            (
                "throughput_per_gpu",
                tpg,
                "tokens_per_s_per_user",
                None if tpu is None else per_gpu * tpu,
                "batch * tokens_per_s_per_user / num_gpus",
            ),
        ]
    for field, given, other, implied, rule in pairs:
        if given is None or implied is None:
            continue
        off = given / implied - 1
        if abs(off) > CONSISTENCY_TOLERANCE:
            e.fail(
                f"measured.{field}",
                given,
                f"disagrees with measured.{other} by {100 * off:+.1f} % ({rule} = "
                f"{implied:.6g}); allowed within {100 * CONSISTENCY_TOLERANCE:g} %",
            )


def check_entry(path: Path, index: int, raw) -> Measurement:
    """One raw entry as a ``Measurement``; one-line ``SpecError`` on the first bad field."""
    eid = raw.get("id") if isinstance(raw, dict) else None
    e = _Entry(path, index, eid)
    if not isinstance(raw, dict):
        e.fail("entry", raw, "each entry must be a mapping (see the README of the format)")
    if not isinstance(eid, str) or not eid.strip():
        e.fail("id", eid, "must be a non-empty string")
    _check_fields(e, raw)
    usable = raw.get("usable", True)
    if not isinstance(usable, bool):
        e.fail("usable", usable, "must be true or false")
    for field in ("source", "model", "hardware"):
        if not isinstance(raw[field], str) or not raw[field].strip():
            e.fail(field, raw[field], "must be a non-empty string")
    common = {
        "id": eid,
        "source": raw["source"],
        "model": raw["model"],
        "hardware": raw["hardware"],
        "notes": str(raw.get("notes") or ""),
        "usable": usable,
        "where": e.where,
    }
    if not usable:  # conditions too unclear by definition: structure only, reported as skipped
        return Measurement(
            **common,
            firmness=str(raw["firmness"]),
            num_gpus=raw["num_gpus"],
            partition=raw["partition"],
            dtypes=raw["dtypes"],
            phase=str(raw["phase"]),
            batch=raw["batch"],
            context=raw["context"],
            measured=dict(raw["measured"] or {}),
            mtp=raw.get("mtp"),
        )
    if raw["firmness"] not in FIRMNESS:
        e.fail("firmness", raw["firmness"], f"allowed {', '.join(FIRMNESS)}")
    if raw["phase"] not in PHASES:
        e.fail("phase", raw["phase"], f"allowed {', '.join(PHASES)}")
    num_gpus = e.number("num_gpus", raw["num_gpus"], integer=True)
    part = e.mapping("partition", raw["partition"], PARTITION_KEYS)
    partition = {k: 1 if part.get(k) is None else e.number(f"partition.{k}", part[k], integer=True) for k in PARTITION_KEYS}
    dt = e.mapping("dtypes", raw["dtypes"], DTYPE_KEYS, nullable=False)
    for key in DTYPE_REQUIRED:
        if dt.get(key) is None:
            raise SpecError(f"{e.where}: dtypes.{key} is missing: it is required (allowed {', '.join(DTYPE_BYTES)})")
    dtypes = {**dt, "experts": dt.get("experts") or dt["weights"]}
    for key in DTYPE_KEYS:
        if not isinstance(dtypes[key], str) or dtypes[key] not in DTYPE_BYTES:  # a list or mapping: unhashable
            e.fail(f"dtypes.{key}", dtypes[key], f"allowed {', '.join(DTYPE_BYTES)}")
    batch = raw["batch"]
    if batch != "max":
        ok = isinstance(batch, int) and not isinstance(batch, bool) and batch > 0
        if not ok:
            e.fail("batch", batch, "must be a positive integer or max (the memory-limited batch)")
    context = e.number("context", raw["context"])
    mtp = _check_mtp(e, raw.get("mtp"))
    if mtp is not None and raw["phase"] != "decode":
        e.fail("mtp", raw["mtp"], "multi-token prediction applies to decode only (mtp: null for prefill)")
    m = Measurement(
        **common,
        firmness=raw["firmness"],
        num_gpus=num_gpus,
        partition=partition,
        dtypes=dtypes,
        phase=raw["phase"],
        batch=batch,
        context=context,
        measured=_check_measured(e, raw["measured"]),
        mtp=mtp,
        serving=_check_serving(e, raw.get("serving")),
    )
    check_consistency(e, m)
    return m


def load_measurements(path: str | Path) -> list[Measurement]:
    """Every entry of a measurement YAML, checked (``usable: false`` ones by structure only).

    Raises a one-line ``SpecError`` for malformed YAML (path and line), a top level that is not
    a list, a duplicate id, or the first bad field of any entry."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, list) or not data:
        raise SpecError(f"{path}: top level = {type(data).__name__} is invalid: must be a non-empty list of entries")
    entries, seen = [], {}
    for i, raw in enumerate(data):
        m = check_entry(path, i, raw)
        if m.id in seen:
            raise SpecError(
                f"{path}: entry {m.id!r}: id = {m.id!r} is invalid: duplicate of entry #{seen[m.id] + 1} (ids must be unique)"
            )
        seen[m.id] = i
        entries.append(m)
    readings_file = readings.file_for(path)  # moejax's readings of the entries' notes, where there are any
    return readings.apply(entries, read_yaml(readings_file), readings_file) if readings_file.is_file() else entries
