"""Facts moejax reads from a measurement's notes where the format has no field for them:
``<stem>.readings.yaml`` beside the measurement file ``<stem>.yaml`` (the vendored
``measurements.yaml`` has one), ``{id: {fact: {value, quote}}}``, each fact with the words of the
entry's notes it rests on; a blank quote, or one the notes do not contain, is a one-line error.

- ``requests``: the requests of an offline run, all queued at once (``serving.concurrency: null``,
  ``batch: max``). No more than that many are ever in flight, so the evaluated batch is
  ``min(requests, B_max)`` (``evaluate``), and the run's concurrency is ``requests``
  (``benchmarks.measurement_cases``). TensorRT-LLM's perf-overview runs: 3,000 requests, against
  B_max of 4,724 (DeepSeek-R1 on 4 B200) or 5,424 (on 8 H200) at realistic accounting.
- ``two_batch_overlap``: the deployment splits each step into two micro-batches and runs one's
  collectives under the other's compute (DeepSeek's and SGLang's large-EP deployments). Evaluated
  with ``Accounting.overlap = 1`` (docs/cost-model.md §4: each phase's collectives hide behind its
  compute window), the accounting's deployment switch for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...physics.specs import SpecError

Measurement = Any  # measurements.Measurement (measurements.py imports this module)


def file_for(path: Path) -> Path:
    """The readings of measurement file ``path``: ``measurements.yaml`` -> ``measurements.readings.yaml``."""
    return path.with_name(f"{path.stem}.readings.yaml")


def _requests(where: str, entry: Measurement, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"{where}: requests = {n!r} is invalid: must be a positive integer")
    s = entry.serving or {}
    offline = entry.phase == "decode" and entry.batch == "max" and s.get("mode") == "agg" and s.get("concurrency") is None
    if not offline:
        raise SpecError(
            f"{where}: requests = {n!r} is invalid: only an aggregated offline decode run (batch: max, serving.mode: agg, "
            "serving.concurrency: null) is read so"
        )
    return n


def _two_batch_overlap(where: str, entry: Measurement, on) -> bool:
    if on is not True:
        raise SpecError(f"{where}: two_batch_overlap = {on!r} is invalid: must be true (leave it out otherwise)")
    return True


FACTS = {"requests": _requests, "two_batch_overlap": _two_batch_overlap}


def _read(where: str, i: str, entry: Measurement | None, facts) -> dict:
    """{fact: value} of entry ``i``'s readings, each checked (one-line ``SpecError``)."""
    if entry is None:
        raise SpecError(f"{where}: id = {i!r} is invalid: no such entry in the measurement file")
    unknown = sorted(set(facts) - set(FACTS)) if isinstance(facts, dict) and facts else [facts]
    if unknown:
        raise SpecError(f"{where}: fact = {unknown[0]!r} is invalid: allowed {', '.join(FACTS)}")
    out = {}
    for name, item in facts.items():
        if not isinstance(item, dict) or set(item) != {"value", "quote"}:
            raise SpecError(f"{where}: {name} = {item!r} is invalid: must be {{value: ..., quote: TEXT}}")
        quote = item["quote"]
        if not isinstance(quote, str) or not quote.strip() or " ".join(quote.split()) not in " ".join(entry.notes.split()):
            raise SpecError(f"{where}: quote = {item['quote']!r} is invalid: the entry's notes do not contain it")
        out[name] = FACTS[name](where, entry, item["value"])
    return out


def apply(entries: list[Measurement], data, file) -> list[Measurement]:
    """``entries`` with the readings ``data`` (``file``'s parsed YAML: {id: {fact: reading}}) applied."""
    if not isinstance(data, dict):
        raise SpecError(f"{file}: top level = {type(data).__name__} is invalid: must be a mapping of entry ids")
    by_id = {e.id: e for e in entries}
    read = {i: _read(f"{file}: reading {i!r}", i, by_id.get(i), facts) for i, facts in data.items()}
    return [dataclasses.replace(e, **read[e.id]) if e.id in read else e for e in entries]
