"""moejax's readings of the measurement notes (moejax/analysis/validation/readings.py): the vendored
readings load with their quotes checked, a bad reading is one line naming the field, an offline run
is evaluated at no more sequences in flight than it has requests, and a two-batch-overlap deployment
with its collectives hidden (overlap = 1)."""

import dataclasses
import shutil

import jax
import numpy as np
import pytest
import yaml

from moejax.analysis import validation as val
from moejax.catalogue import load_accounting
from moejax.physics.specs import SpecError

SERVING = "moejax/data/reference/serving"
OFFLINE = "trtpo-r1-h200-dep8-1k1k"


def test_vendored_readings_apply():
    entries = {m.id: m for m in val.load_measurements(f"{SERVING}/measurements.yaml")}
    readings = yaml.safe_load(open(f"{SERVING}/measurements.readings.yaml"))
    requests = {i: m.requests for i, m in entries.items() if m.requests}
    assert requests == {i: r["requests"]["value"] for i, r in readings.items() if "requests" in r} and requests
    assert all(entries[i].batch == "max" and entries[i].serving["concurrency"] is None for i in requests)
    overlapped = {i for i, m in entries.items() if m.two_batch_overlap}
    assert overlapped == {i for i, r in readings.items() if "two_batch_overlap" in r} and overlapped


def test_two_batch_overlap_is_evaluated_at_full_overlap():
    """A point read as two-batch overlap predicts exactly what it predicts unread at ``overlap = 1``
    (rel 1e-12), and no less than at the preset's ``overlap = 0``."""
    jax.config.update("jax_enable_x64", True)
    entries = [m for m in val.load_measurements(f"{SERVING}/measurements.yaml") if m.two_batch_overlap]
    acc = load_accounting("realistic")
    read = val.evaluate(val.resolve_all(entries)[0], acc)
    unread = [dataclasses.replace(e, two_batch_overlap=False) for e in entries]
    full = val.evaluate(val.resolve_all(unread)[0], dataclasses.replace(acc, overlap=1.0))
    none = val.evaluate(val.resolve_all(unread)[0], acc)
    np.testing.assert_allclose(read.predicted, full.predicted, rtol=1e-12)
    assert float(acc.overlap) == 0.0 and all(abs(np.log(read.predicted / none.predicted)) > 0.05)


def test_an_offline_run_runs_at_most_its_requests():
    """DeepSeek-R1 DEP8 on H200: B_max at realistic accounting exceeds the run's 3,000 requests, so the
    evaluated batch is 3,000 exactly; without the reading it is B_max."""
    jax.config.update("jax_enable_x64", True)
    (entry,) = [m for m in val.load_measurements(f"{SERVING}/measurements.yaml") if m.id == OFFLINE]
    acc = load_accounting("realistic")
    with_reading, without = (val.evaluate(val.resolve_all([e])[0], acc) for e in (entry, _unread(entry)))
    assert float(with_reading.batch[0]) == 3000.0
    assert float(without.batch[0]) == float(without.b_max[0]) > 3000.0
    assert np.isfinite(with_reading.predicted[0]) and with_reading.predicted[0] < without.predicted[0]


def _unread(entry):
    return dataclasses.replace(entry, requests=None)


BAD = [
    ({"requests": {"value": 3000, "quote": "4000 requests"}}, r"quote = '4000 requests' is invalid: the entry's notes do not"),
    ({"requests": {"value": 0, "quote": "3000 requests"}}, r"requests = 0 is invalid: must be a positive integer"),
    ({"requests": {"value": 3000}}, r"requests = .* is invalid: must be \{value: \.\.\., quote: TEXT\}"),
    ({"batch": {"value": 8, "quote": "3000 requests"}}, r"fact = 'batch' is invalid: allowed requests, two_batch_overlap"),
    ({"requests": {"value": 3000, "quote": "  "}}, r"quote = '  ' is invalid: the entry's notes do not contain it"),
    ({"two_batch_overlap": {"value": "yes", "quote": "3000 requests"}}, r"two_batch_overlap = 'yes' is invalid: must be true"),
]


@pytest.mark.parametrize("reading, message", BAD)
def test_a_bad_reading_is_one_line(tmp_path, reading, message):
    shutil.copy(f"{SERVING}/measurements.yaml", tmp_path / "measurements.yaml")
    (tmp_path / "measurements.readings.yaml").write_text(yaml.safe_dump({OFFLINE: reading}))
    with pytest.raises(SpecError, match=message) as e:
        val.load_measurements(tmp_path / "measurements.yaml")
    assert "\n" not in str(e.value) and f"reading '{OFFLINE}'" in str(e.value)


def test_a_reading_of_an_unknown_entry_is_refused(tmp_path):
    shutil.copy(f"{SERVING}/measurements.yaml", tmp_path / "measurements.yaml")
    (tmp_path / "measurements.readings.yaml").write_text(yaml.safe_dump({"nope": {"requests": {"value": 1, "quote": "x"}}}))
    with pytest.raises(SpecError, match=r"reading 'nope': id = 'nope' is invalid: no such entry"):
        val.load_measurements(tmp_path / "measurements.yaml")


def test_requests_are_read_only_for_an_offline_aggregated_decode_run(tmp_path):
    """A request count on an entry with a published batch (here the MTP point, batch 1) is refused:
    the evaluation would ignore it."""
    shutil.copy(f"{SERVING}/measurements.yaml", tmp_path / "measurements.yaml")
    reading = {"requests": {"value": 3000, "quote": "batch 1"}}
    (tmp_path / "measurements.readings.yaml").write_text(yaml.safe_dump({"trt-b200-r1-b1-mtp3": reading}))
    with pytest.raises(SpecError, match=r"requests = 3000 is invalid: only an aggregated offline decode run"):
        val.load_measurements(tmp_path / "measurements.yaml")
