"""The registry of result variables (moejax/engine/variables.py): every StepCosts field and every
HardwareSpec field is declared there, and docs/dataset.md is the registry's generated text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from moejax.catalogue import HARDWARE_FIELDS
from moejax.engine import frontier, variables
from moejax.engine.frontier import FrontierSpec
from moejax.physics.cost import StepCosts
from moejax.physics.specs import HardwareSpec

ROOT = Path(__file__).resolve().parent.parent


def test_docs_dataset_md_is_the_generated_registry():
    """docs/dataset.md is regenerated with: python -m moejax.engine.variables --markdown > docs/dataset.md"""
    assert (ROOT / "docs" / "dataset.md").read_text() == variables.markdown(), (
        "docs/dataset.md is stale: run python -m moejax.engine.variables --markdown > docs/dataset.md"
    )


def test_every_step_costs_field_is_registered():
    """Adding a StepCosts field means adding its entry to STEP_COSTS (or, if the dataset deliberately
    leaves it out, to STEP_COSTS_NOT_STORED with the reason); nothing else registers one."""
    fields = {f.name for f in dataclasses.fields(StepCosts)}
    stored, left_out = set(variables.STEP_COSTS), set(variables.STEP_COSTS_NOT_STORED)
    assert not stored & left_out
    assert fields - stored - left_out == set(), "StepCosts fields missing from engine/variables.py STEP_COSTS"
    assert stored | left_out == fields, "STEP_COSTS names a field StepCosts does not have"


def test_hardware_fields_carry_their_metadata():
    """Every HardwareSpec field declares units, long_name and label; the catalogue's field list and
    the dataset's hw_* variables are derived from them."""
    fields = dataclasses.fields(HardwareSpec)
    assert HARDWARE_FIELDS == tuple(f.name for f in fields)
    for f in fields:
        assert {"units", "long_name", "label"} <= set(f.metadata), f.name
        var = variables.REGISTRY[f"hw_{f.name}"]
        assert (var.units, var.long_name, var.dims) == (f.metadata["units"], f.metadata["long_name"], ("hardware",))


def test_registered_variables_are_well_formed():
    spec = FrontierSpec(batches=(16.0,), levels=(10.0,), slo_rate=20.0, ttft_max=2.0, workloads=((8704.0, 8192.0, 1024.0),))
    computed = frontier.variables(spec)
    assert not set(computed) & set(variables.REGISTRY), "a frontier variable shadows a registered one"
    for name, var in {**variables.REGISTRY, **computed}.items():
        assert var.name == name and var.long_name and var.dims
        assert var.dtype == variables.FLOAT or var.dtype in ("i1", "i2", "i4", "f8"), name
        if var.is_flag:
            assert var.dtype.startswith("i") and len(var.flag_values) == len(var.flag_meanings.split()), name
        else:
            assert var.units and not var.flag_values, name
