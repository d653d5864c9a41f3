"""A measurement as deployed: its specs (model with its dtypes, hardware, partition, workload), or
the one-line reason moejax cannot express it.

Everything a measurement does not publish and moejax must choose is recorded in the point's
``notes`` (printed in the residual table), never chosen silently:

- ``dense_tp`` (TP degree of the dense FFN layers; 0 = the whole stage): searched over the legal
  values of {1, 2, 4, 8, 0}; the evaluation keeps the one with the best predicted throughput.
- ``redundant_experts``: when ``ep`` does not divide the routed experts, the smallest number of
  redundant expert slots that makes it divide (DeepSeek-V3 on EP144, EP48 or EP72: 32, as
  DeepSeek's EP144 deployment publishes).

Reasons a point is not expressible: a catalogue name moejax does not have (one that is known to
need per-layer attention/FFN patterns says so), a partition whose GPU count
``tp*dp_attn*kvp*pp`` differs from ``num_gpus``, or a partition the model cannot be split by
(``moejax.physics.partition.check_partition``). A point that does not fit in memory at its
batch IS expressible: it is evaluated and reported as a prediction failure ("infeasible").
"""

from __future__ import annotations

import dataclasses

from ...catalogue import available, hardware_entry, load_hardware, load_model
from ...physics.partition import check_partition
from ...physics.specs import KV_MODES, HardwareSpec, ModelSpec, Partition, SpecError, Workload, replace
from .measurements import Measurement

DENSE_TP_CHOICES = (1, 2, 4, 8, 0)
FAMILIES = ("NVIDIA", "AMD")
WORKLOAD_FIELDS = tuple(f.name for f in dataclasses.fields(Workload))


@dataclasses.dataclass(frozen=True)
class Point:
    """One usable, expressible measurement resolved into kernel inputs. ``partitions`` are the
    candidate variants of the searched, unpublished choices (``labels`` name them; one variant
    when nothing is searched); ``notes`` say every choice and approximation made."""

    measurement: Measurement
    model: ModelSpec
    hardware: HardwareSpec
    partitions: tuple[Partition, ...]
    labels: tuple[str, ...]
    workload: Workload
    family: str
    notes: tuple[str, ...]


def hardware_family(name: str) -> str:
    """ "NVIDIA" or "AMD" from the catalogue entry's description (its first word), else the name."""
    word = str(hardware_entry(name).get("description", "")).split(" ")[0].upper()
    return word if word in FAMILIES else name


def model_spec(meas: Measurement) -> tuple[ModelSpec, list[str]]:
    """The catalogue model with the measurement's dtypes, and notes on any approximation.

    Mapping (measurement README): weights -> weights, experts -> experts, kv -> kv, activations ->
    GEMM input precision; communicated activations stay BF16; dispatch is FP8 when the GEMM inputs
    are FP8 or FP4, else BF16.
    """
    dt = meas.dtypes
    dispatch = "fp8" if dt["activations"] in ("fp8", "fp4") else "bf16"
    return load_model(
        meas.model,
        weights=dt["weights"],
        experts=dt["experts"],
        kv=dt["kv"],
        gemm=dt["activations"],
        activations="bf16",
        dispatch=dispatch,
    ), []


def _redundant(meas: Measurement, m: ModelSpec) -> int:
    """Smallest redundant expert count making ``ep`` divide the expert slots (0 if it divides)."""
    e, ep = int(m.n_experts), meas.partition["ep"]
    return (-e) % ep if ep > 1 else 0


def partitions(meas: Measurement, m: ModelSpec) -> tuple[tuple[Partition, ...], tuple[str, ...], list[str]] | str:
    """(variants, labels, notes) of the deployed partition, or the reason it is not expressible."""
    d = meas.partition
    used = d["tp"] * d["dp_attn"] * d["kvp"] * d["pp"]
    if used != meas.num_gpus:
        return f"partition uses tp*dp_attn*kvp*pp = {used} GPUs but num_gpus = {meas.num_gpus}"
    base = {**d, "dp": 1, "kv_mode": KV_MODES["kvp"] if d["kvp"] > 1 else KV_MODES["none"]}
    notes = []
    redundant = _redundant(meas, m)
    if redundant:
        base["redundant_experts"] = redundant
        notes.append(f"redundant_experts = {redundant} (smallest making ep = {d['ep']} divide the expert slots)")
    try:
        p = Partition(**{k: float(v) for k, v in base.items()})
        check_partition(m, p)
    except SpecError as e:
        return f"partition not legal for {meas.model}: {e}"
    g = d["tp"] * d["dp_attn"] * d["kvp"]  # dense_tp lays out the dense FFN layers and the LM head
    choices = [t for t in DENSE_TP_CHOICES if t == 0 or (t < g and g % t == 0)]
    variants, labels = [], []
    for t in choices:
        try:
            q = replace(p, dense_tp=float(t))
            check_partition(m, q)
        except SpecError:
            continue
        variants.append(q)
        labels.append(f"dense_tp = {t or 'all'} (searched, unpublished)")  # 0: all of tp·dp_attn·kvp
    return tuple(variants), tuple(labels), notes


def workload(meas: Measurement) -> Workload:
    """Decode: ``batch`` sequences (0: B_max); prefill: ``batch`` prompts per pass (0: decode's
    B_max at that context, resolved in the kernel); MTP as draft/accepted tokens."""
    batch = 0.0 if meas.batch == "max" else float(meas.batch)
    mtp = meas.mtp or {"draft_tokens": 0.0, "accepted": 0.0}
    return Workload(
        context=float(meas.context), batch=batch, draft_tokens=float(mtp["draft_tokens"]), accepted=float(mtp["accepted"])
    )


def unknown_name(meas: Measurement, kind: str, name: str, strict: bool) -> str:
    """The not-expressible reason for a catalogue name moejax does not have (``strict``: an error)."""
    if strict:
        raise SpecError(f"{meas.where}: {kind} = {name!r} is unknown: available {', '.join(available(kind))}")
    return f"{kind} {name!r} is not in the catalogue (conf/{kind}/)"


def resolve(meas: Measurement, strict: bool = False) -> Point | str:
    """The point as deployed, or the one-line reason it is not expressible. ``strict``: a catalogue
    name that is neither known nor a known pattern model is an error, not a reason."""
    for kind, name in (("model", meas.model), ("hardware", meas.hardware)):
        if name not in available(kind):
            return unknown_name(meas, kind, name, strict)
    m, notes = model_spec(meas)
    parts = partitions(meas, m)
    if isinstance(parts, str):
        return parts
    variants, labels, part_notes = parts
    return Point(
        meas,
        m,
        load_hardware(meas.hardware),
        variants,
        labels,
        workload(meas),
        hardware_family(meas.hardware),
        tuple(part_notes + notes),
    )


def resolve_all(entries: list[Measurement], strict: bool = False) -> tuple[list[Point], dict[str, str], list[str]]:
    """(points, not_expressible {id: reason}, skipped ids) in file order."""
    points, not_expressible, skipped = [], {}, []
    for meas in entries:
        if not meas.usable:
            skipped.append(meas.id)
            continue
        r = resolve(meas, strict)
        if isinstance(r, str):
            not_expressible[meas.id] = r
        else:
            points.append(r)
    return points, not_expressible, skipped
