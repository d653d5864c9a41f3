"""The Hydra side of the sweep config: structured-config schemas (ConfigStore), generated from the
typed classes of ``engine.config`` (one declaration per concept), and the command boundary that
turns a composed ``DictConfig`` into the frozen, validated ``SweepConfig`` (``sweep_config``).

Hydra checks types against these schemas when it composes the config; ``SweepConfig.validate``
checks values and catalogue names, raising one-line ``SpecError``s.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .engine import config as typed

_SCHEMAS: dict[type, type] = {}


def _hydra_type(kind):
    """A typed-config annotation as Hydra takes it: tuples as lists, ``X | None`` as ``Optional[X]``,
    nested config classes as their schemas."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        return list[_hydra_type(args[0])]
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return Optional[_hydra_type(inner[0])] if len(inner) == 1 else Any  # noqa: UP007 (Hydra needs Optional)
    return _SCHEMAS.get(kind, kind)


def _default(f: dataclasses.Field):
    """The schema field's default: tuples as fresh lists, nested configs as their schemas, required as ``???``."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=_SCHEMAS.get(f.default_factory, f.default_factory))
    if isinstance(f.default, tuple):
        return dataclasses.field(default_factory=lambda d=f.default: list(d))
    return dataclasses.field(default=MISSING if f.default is dataclasses.MISSING else f.default)


def schema(cls: type, name: str) -> type:
    """The mutable Hydra schema ``name`` of typed config class ``cls`` (same fields, order and defaults)."""
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _hydra_type(hints[f.name]), _default(f)) for f in dataclasses.fields(cls)]
    _SCHEMAS[cls] = dataclasses.make_dataclass(name, fields, namespace={"__doc__": f"Hydra schema of {cls.__name__}."})
    return _SCHEMAS[cls]


PartitionsConf = schema(typed.Partitions, "PartitionsConf")
DtypesConf = schema(typed.Dtypes, "DtypesConf")
AccountingConf = schema(typed.AccountingOverrides, "AccountingConf")
InteractivityConf = schema(typed.Interactivity, "InteractivityConf")
SloConf = schema(typed.Slo, "SloConf")
HardwareSpaceConf = schema(typed.HardwareSpace, "HardwareSpaceConf")
GridConf = schema(typed.GridConfig, "GridConf")
BreakevenConf = schema(typed.Breakeven, "BreakevenConf")


@dataclasses.dataclass
class SweepConf:
    grid: Any = None  # a GridConf, chosen with +grid=NAME
    model: Any = None  # set by the optional `model=NAME` group: replaces grid.models
    hardware: Any = None  # set by the optional `hardware=NAME` group: replaces grid.hardware
    out: Any = None  # dataset path; default: sweep.nc in the Hydra run directory
    overwrite: Any = False  # replace an existing out= file
    max_output_bytes: float = 8e9  # refuse a dataset estimated larger (uncompressed), before computing
    max_memory_bytes: float = 4e9  # refuse a grid whose inputs (levels, design space, candidates) need more, before allocating
    parts_dir: str = "outputs/.parts"  # completed chunks, kept until the dataset is written
    precision: str = "float32"
    keep_partitions: Any = False
    sensitivities: Any = False  # add elasticities of throughput to hardware quantities
    max_chunk_evaluations: int = 2**24  # candidate evaluations per chunk: bounds memory
    progress: Any = "auto"  # auto | true | false
    summary: Any = True
    compilation_cache: Any = "~/.cache/moejax/jax"  # persistent JAX compilation cache; null disables
    breakeven: BreakevenConf = dataclasses.field(default_factory=BreakevenConf)
    distributed: Any = None  # conf/distributed/: none | env | slurm


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (``sweep_schema``, ``grid/grid_schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="sweep_schema", node=SweepConf)
    cs.store(group="grid", name="grid_schema", node=GridConf)


def sweep_config(cfg: DictConfig, kappa_star: bool = False) -> typed.SweepConfig:
    """The command boundary: the composed config as a frozen, validated ``SweepConfig`` (the κ*
    settings checked with ``kappa_star`` or ``breakeven.include``). A mandatory value left unset
    (``???``) raises OmegaConf's ``MissingMandatoryValue`` naming its key."""
    return typed.build(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True), kappa_star)
