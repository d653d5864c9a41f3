"""Facts moejax reads from a measurement's notes where the format has no field for them:
``readings.yaml`` beside the measurement file (the vendored one has one), each reading with the
quote from the entry's notes it rests on; a quote the notes do not contain is a one-line error.

- ``requests``: the requests of an offline run, all queued at once (``serving.concurrency: null``,
  ``batch: max``). No more than that many are ever in flight, so the evaluated batch is
  ``min(requests, B_max)`` (``evaluate``), and the run's concurrency is ``requests``
  (``benchmarks.measurement_cases``). TensorRT-LLM's perf-overview runs: 3,000 requests, against
  B_max of 4,724 (DeepSeek-R1 on 4 B200) or 5,424 (on 8 H200) at realistic accounting.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ...physics.specs import SpecError

if TYPE_CHECKING:
    from .measurements import Measurement

FILE = "readings.yaml"


def _check(where: str, entry: Measurement | None, item) -> int:
    if entry is None:
        raise SpecError(f"{where}: id is invalid: no such entry in the measurement file")
    if not isinstance(item, dict) or set(item) != {"requests", "quote"}:
        raise SpecError(f"{where}: reading = {item!r} is invalid: must be {{requests: N, quote: TEXT}}")
    n = item["requests"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"{where}: requests = {n!r} is invalid: must be a positive integer")
    if not isinstance(item["quote"], str) or item["quote"] not in " ".join(entry.notes.split()):
        raise SpecError(f"{where}: quote = {item['quote']!r} is invalid: the entry's notes do not contain it")
    if entry.batch != "max" or (entry.serving or {}).get("concurrency") is not None:
        raise SpecError(f"{where}: requests is invalid: only an offline run (batch: max, concurrency: null) is read so")
    return n


def apply(entries: list[Measurement], data, file) -> list[Measurement]:
    """``entries`` with the readings ``data`` (``file``'s parsed YAML: {id: reading}) applied."""
    if not isinstance(data, dict):
        raise SpecError(f"{file}: top level = {type(data).__name__} is invalid: must be a mapping of entry ids")
    by_id = {e.id: e for e in entries}
    requests = {i: _check(f"{file}: reading {i!r}", by_id.get(i), item) for i, item in data.items()}
    return [dataclasses.replace(e, requests=requests[e.id]) if e.id in requests else e for e in entries]
