"""The ROCm stack factor (moejax.analysis.validation.stack_fit): the worked example, and the fit on the
vendored measurements (the only ROCm measurements): each implied factor makes its point exact, and each
point's leave-one-out factor is the other points' geometric mean."""

import dataclasses
import json
import math

import jax
import pytest
import yaml
from cli_runs import run_main

from moejax.analysis import validation as val
from moejax.analysis.validation import stack_fit
from moejax.catalogue import hardware_entry, load_accounting, load_hardware
from moejax.physics.specs import SpecError, replace

MEASUREMENTS = "moejax/data/reference/serving/measurements.yaml"


def test_geometric_mean_worked_example():
    """Module docstring: implied factors 1.5 and 1.6 give sqrt(2.4) = 1.549 (to 1e-12)."""
    assert stack_fit.geometric_mean([1.5, 1.6]) == pytest.approx(math.sqrt(2.4), rel=1e-12)
    assert math.isnan(stack_fit.geometric_mean([]))


@pytest.fixture(scope="module")
def fitted():
    jax.config.update("jax_enable_x64", True)
    points, _, _ = val.resolve_all(val.load_measurements(MEASUREMENTS))
    acc = load_accounting("kernel")
    return stack_fit.rocm_points(points), acc, stack_fit.fit(points, acc)


def test_each_implied_factor_makes_its_point_exact(fitted):
    """The prediction is affine in the factor (the host work is not scaled), so evaluating a point at
    its implied factor returns the measured figure (rel 1e-9); the fit is their geometric mean."""
    points, acc, sf = fitted
    assert len(points) >= 2 and set(sf.implied) == {p.measurement.id for p in points}
    for p in points:
        ev = val.evaluate([p], replace(acc, rocm_factor=sf.implied[p.measurement.id]))
        assert float(ev.predicted[0]) == pytest.approx(p.measurement.value, rel=1e-9)
    assert sf.factor == pytest.approx(stack_fit.geometric_mean(sf.implied.values()), rel=1e-12)


def test_leave_one_out_uses_the_other_points(fitted):
    """Each point's out-of-sample factor leaves it out, and its predicted figure is the kernel's at
    that factor (rel 1e-9)."""
    points, acc, sf = fitted
    for p in points:
        i = p.measurement.id
        others = [v for k, v in sf.implied.items() if k != i]
        assert sf.loo[i] == pytest.approx(stack_fit.geometric_mean(others), rel=1e-12)
        ev = val.evaluate([p], replace(acc, rocm_factor=sf.loo[i]))
        assert sf.loo_predicted[i] == pytest.approx(float(ev.predicted[0]), rel=1e-9)


def test_the_catalogue_names_each_stack(tmp_path):
    """NVIDIA parts default to CUDA; AMD runs ROCm, TPUs XLA, Trainium Neuron; a bad name is one line."""
    assert [float(load_hardware(n).stack) for n in ("h100-sxm", "mi300x", "tpu-v5p", "trainium2")] == [0.0, 1.0, 2.0, 3.0]
    entry = {k: v for k, v in hardware_entry("mi300x").items() if not k.startswith("_")}
    entry["stack"] = {"value": "metal", "source": "test"}
    path = tmp_path / "metal.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(SpecError, match=r"stack = 'metal' is invalid: allowed cuda, rocm, xla, neuron"):
        load_hardware(str(path))


def test_a_point_faster_than_its_host_work_is_one_line(fitted):
    """A ROCm point measured faster than its predicted host work alone (``realistic``: 0.9 ms per step)
    implies a factor <= 0."""
    points, _, _ = fitted
    acc, p = load_accounting("realistic"), points[0]
    fast = dataclasses.replace(p, measurement=dataclasses.replace(p.measurement, measured={p.measurement.figure: 1e-6}))
    with pytest.raises(SpecError, match=r"rocm_factor = -?[0-9.e+-]+ is invalid: must be > 0") as e:
        stack_fit.fit([fast], acc)
    assert "\n" not in str(e.value)


def test_validate_reports_each_rocm_point_left_out(tmp_path):
    """``python -m moejax.validate`` on the vendored file at ``realistic`` (whose factor those points
    pinned) gives each ROCm point's prediction at the factor fitted without it (rel 1e-9)."""
    out = tmp_path / "out"
    args = ["accounting=realistic", f"out={out}"]
    code, stdout, stderr = run_main("moejax.validate", args, hydra_dir=tmp_path / "hydra")
    assert code == 0, stderr[-2000:]
    loo = json.loads(stdout.strip().splitlines()[-1])["rocm_loo"]
    points, _, _ = val.resolve_all(val.load_measurements(MEASUREMENTS))
    sf = stack_fit.fit(points, load_accounting("realistic"))
    assert set(loo) == set(sf.loo) and len(loo) >= 2
    for i, e in loo.items():
        assert e["rocm_factor"] == pytest.approx(sf.loo[i], rel=1e-9)
        assert e["predicted"] == pytest.approx(sf.loo_predicted[i], rel=1e-9)
