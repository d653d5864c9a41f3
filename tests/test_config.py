"""The typed config at the command boundary (issue 17, part 2): one frozen, validated
``SweepConfig``; nothing after the boundary sees a ``DictConfig``; the recorded config text (the
resume hash) is the text earlier versions wrote; and the hardware field lists a sweep uses are
derived from ``HardwareSpec``'s metadata (part 1). That the plan is built once per sweep and handed
to the κ* and κ*(u) solvers is checked on a real κ* sweep in tests/test_breakeven.py
(``test_sweep_can_include_kappa_star``)."""

import dataclasses
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from moejax.catalogue import CONF_DIR
from moejax.engine import plan as plan_module
from moejax.engine.config import HARDWARE_SPACE, HardwareSpace, SweepConfig
from moejax.engine.grid import ELASTICITY_FIELDS
from moejax.engine.run import science_config, science_text
from moejax.physics.specs import HardwareSpec
from moejax.schema import HardwareSpaceConf, register, sweep_config

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x7b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.kappas=[5]",
    "grid.partitions.tp=[1,8]",
    "grid.partitions.ep=[1,8]",
    "grid.partitions.pp=[1]",
    "grid.partitions.dp_attn=[1]",
    "grid.partitions.kvp=[1]",
    "grid.partitions.dense_tp=[8]",
    "summary=false",
    "compilation_cache=null",
]


def composed(*overrides):
    """The config Hydra composes from ``overrides`` (in-process)."""
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("config", list(overrides))


def test_the_config_is_frozen_and_typed():
    cfg = sweep_config(composed(*TINY, "grid.contexts=[1024]"))
    assert isinstance(cfg, SweepConfig) and cfg.grid.models == ("mixtral-8x7b",) and cfg.grid.kappas == (5.0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.grid.partitions.tp = (2,)  # type: ignore[misc]
    assert cfg.grid.partitions.space().tp == (1, 8)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+grid=quick"],
        ["+grid=frontier"],
        ["+grid=qs-paper"],
        ["+grid=design-space"],
        ["+grid=quick", "sensitivities=true", "grid.hardware_space.hbm_bw=[1,2]", "grid.batches=[1,8,64]"],
        ["+grid=quick", "grid.contexts=null", "grid.workloads=[{isl:1024,osl:256},{isl:4096,osl:512}]"],
        ["+grid=quick", "grid.economics={price_per_gpu_hour:{h100-sxm:2.5}}", "grid.accounting.overlap=0.5"],
        ["+grid=quick", "grid.name='1e3'", "grid.dtypes.kv=fp8", "precision=float64", "keep_partitions=true"],
    ],
)
def test_the_recorded_config_text_is_unchanged(overrides):
    """The dataset's ``config`` attribute (and the resume hash over it) is the text OmegaConf wrote
    before the typed config existed: existing parts and datasets keep their hashes."""
    cfg = composed(*overrides)
    typed = sweep_config(cfg)
    before = OmegaConf.to_yaml(
        OmegaConf.create({**science_config(typed), "grid": OmegaConf.to_container(cfg.grid, resolve=True)})
    )
    assert science_text(typed) == before


def test_engine_and_analysis_never_see_a_dictconfig():
    """``grep -rn DictConfig moejax/engine moejax/analysis`` prints nothing, and neither imports OmegaConf."""
    found = subprocess.run(
        ["grep", "-rn", "-e", "DictConfig", "-e", "import omegaconf", "-e", "from omegaconf", "moejax/engine", "moejax/analysis"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.stdout == "", found.stdout


def _metadata(key):
    return [f for f in dataclasses.fields(HardwareSpec) if f.metadata.get(key) is not None]


def test_hardware_lists_are_derived_from_the_spec_metadata():
    """Adding a hardware field touches specs.py (its metadata), its formula, the catalogue YAML and
    the oracle: every list a sweep uses is the metadata-selected fields, in the metadata's order."""
    from moejax.catalogue import HARDWARE_FIELDS
    from moejax.engine.variables import REGISTRY
    from moejax.figures.sensitivity import ELASTICITY_LABELS

    elastic = sorted(_metadata("elasticity"), key=lambda f: f.metadata["elasticity"])
    assert ELASTICITY_FIELDS == tuple(f.name for f in elastic)
    assert list(ELASTICITY_LABELS) == list(ELASTICITY_FIELDS)
    assert all(ELASTICITY_LABELS[f.name] == f.metadata["label"] for f in elastic)
    assert all(f"elasticity_{f}" in REGISTRY for f in ELASTICITY_FIELDS)
    varied = sorted(_metadata("space"), key=lambda f: f.metadata["space"][0])
    keys = list(dict.fromkeys(f.metadata["space"][1] for f in varied))
    assert list(HARDWARE_SPACE) == keys
    assert [f.name for f in dataclasses.fields(HardwareSpace)] == keys == [f.name for f in dataclasses.fields(HardwareSpaceConf)]
    for f in varied:
        leaves, tag = HARDWARE_SPACE[f.metadata["space"][1]]
        assert f.name in leaves and tag == (f.metadata["space"][2] if len(f.metadata["space"]) > 2 else None)
        assert (f.metadata["space"][1] in plan_module.SPACE_FIELDS) == (tag is None)
    assert HARDWARE_FIELDS == tuple(f.name for f in dataclasses.fields(HardwareSpec))
    assert all(f"hw_{f}" in REGISTRY for f in HARDWARE_FIELDS)


def test_a_new_hardware_field_reaches_every_derived_list():
    """A field added to ``HardwareSpec`` with sweep metadata appears in the elasticities, the
    design space (the typed config, the Hydra schema, the plan's multipliers) and the labels: the
    derivations run again on a spec with one more field."""
    from moejax.engine.config import space_keys
    from moejax.engine.grid import elasticity_fields

    extra = dataclasses.field(
        default=1.0,
        metadata={"units": "s-1", "long_name": "a new quantity", "label": "new", "space": (8, "new_bw"), "elasticity": 8},
    )
    widened = dataclasses.make_dataclass("HardwareSpec", [("new_bw", float, extra)], bases=(HardwareSpec,), frozen=True)
    keys = space_keys(widened)
    assert keys["new_bw"] == (("new_bw",), None) and list(keys)[-1] == "new_bw"
    assert {k: v for k, v in keys.items() if k != "new_bw"} == HARDWARE_SPACE
    assert elasticity_fields(widened) == (*ELASTICITY_FIELDS, "new_bw")


def test_unknown_nested_keys_and_bad_design_space_values_are_refused():
    """A grid built without Hydra's schema (a user file, a direct ``build()``) cannot smuggle a
    misspelled nested key past the typed config, and design-space values are positive finite numbers
    (island sizes whole): one line naming the field."""
    from moejax.engine.config import build
    from moejax.physics.specs import SpecError

    plain = OmegaConf.to_container(composed(*TINY, "grid.contexts=[1024]"), resolve=True)
    for where, key in (("hardware_space", "hbm_bandwith"), ("accounting", "overlapp"), ("partitions", "tpp")):
        bad = {**plain, "grid": {**plain["grid"], where: {**(plain["grid"][where] or {}), key: [1, 2]}}}
        with pytest.raises(SpecError, match=rf"^grid\.{where}\.{key} is not a known field: allowed "):
            build(bad)
    for field, values in (("hbm_bw", [float("nan")]), ("flops", [float("inf")]), ("hbm_bw", [True]), ("island_size", [1.5])):
        bad = {**plain, "grid": {**plain["grid"], "hardware_space": {field: values}}}
        with pytest.raises(SpecError, match=rf"^grid\.hardware_space\.{field} = "):
            build(bad)


def test_design_space_matches_one_accelerator_at_a_time():
    """``plan.design_space`` builds the crossed accelerators array-wise; the slow reference is the
    per-point construction it replaced (``dataclasses.replace`` on each catalogue entry, one
    combination at a time, last field fastest): the same leaves bit for bit, the same names."""
    import itertools

    import numpy as np

    from moejax.catalogue import load_hardware

    names = ["h100-sxm", "gb200-nvl72"]
    hardware = [load_hardware(n) for n in names]
    space = {"hbm_bw": [0.5, 2.0], "flops": [1.0, 1.5, 3.0], "island_size": [4, 72]}  # declaration order
    stacked, labels = plan_module.design_space(hardware, names, HardwareSpace(**{k: tuple(v) for k, v in space.items()}))
    expected, expected_labels = [], []
    for hw, name in zip(hardware, names):
        for combo in itertools.product(*space.values()):
            changes, tags = {}, []
            for field, value in zip(space, combo):
                leaves, tag = HARDWARE_SPACE[field]
                changes.update({leaf: float(value) if tag else getattr(hw, leaf) * value for leaf in leaves})
                tags.append(f"{tag}={value:g}" if tag else f"{field}x{value:g}")
            expected.append(dataclasses.replace(hw, **changes))
            expected_labels.append("|".join([name, *tags]))
    assert labels == expected_labels and len(labels) == 24
    for f in dataclasses.fields(HardwareSpec):
        want = np.array([float(getattr(e, f.name)) for e in expected])
        np.testing.assert_array_equal(np.asarray(getattr(stacked, f.name)), want, err_msg=f.name)
    assert plan_module.design_space(hardware, names, None)[1] == names  # no space: the catalogue entries
