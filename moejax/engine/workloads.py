"""Serving inputs of a sweep: ISL/OSL workloads (``grid.workloads``) in place of contexts, and
the economics of each accelerator (``hw_price_per_gpu_hour``, ``hw_board_power``, with
``grid.economics`` overrides) turned into $ per million output tokens and J per output token.

Layout: a workload grid keeps the ``context`` dimension; it holds each workload's decode context
``isl + osl/2`` (``physics.serving.decode_context``), and the coordinates ``isl`` and ``osl`` run
along it. Two workloads with the same decode context are refused (one context, one point).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..catalogue import ECONOMICS_FIELDS, hardware_economics, hardware_entry
from ..physics.serving import cost_per_mtok, decode_context, joules_per_token
from ..physics.specs import SpecError
from .dataset import create_variable
from .values import plain
from .variables import ECONOMICS, WORKLOADS, economics_variables


def _positive_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v)) and v > 0


def grid_workloads(grid) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(decode contexts, isl, osl)`` of ``grid.workloads`` (one ``{isl, osl}`` or a list), or
    None without workloads. One-line ``SpecError`` on a bad or contradictory entry.

    ``[{isl: 1024, osl: 1024}, {isl: 8192, osl: 512}]``: contexts 1536 and 8448 tokens."""
    wls = grid.workloads
    if wls is None:
        if grid.contexts is None:
            raise SpecError("grid.contexts = None is invalid: a list of context lengths (tokens), or set grid.workloads")
        return None
    if grid.contexts is not None:
        raise SpecError(
            f"grid.workloads = {plain(wls)!r} is invalid: set either grid.contexts or grid.workloads, "
            "not both (grid.contexts=null)"
        )
    wls = [wls] if hasattr(wls, "keys") else list(wls)
    if not wls:
        raise SpecError("grid.workloads = [] is invalid: one {isl, osl} pair or a non-empty list of them")
    isl, osl = [], []
    for w in wls:
        if not hasattr(w, "keys") or set(w.keys()) != {"isl", "osl"}:
            raise SpecError(f"grid.workloads = {plain(w)!r} is invalid: each workload is {{isl: tokens, osl: tokens}}")
        for field in ("isl", "osl"):
            if not _positive_number(w[field]):
                raise SpecError(f"grid.workloads.{field} = {w[field]!r} is invalid: a positive number of tokens")
        isl.append(float(w["isl"]))
        osl.append(float(w["osl"]))
    isl, osl = np.array(isl), np.array(osl)
    contexts = decode_context(isl, osl)
    if len(set(contexts.tolist())) != len(contexts):
        raise SpecError(
            f"grid.workloads = {plain(wls)!r} is invalid: two workloads have the same decode context "
            "isl + osl/2 (one point each: make them differ)"
        )
    return contexts, isl, osl


def workload_coords(isl: np.ndarray, osl: np.ndarray) -> dict:
    """``name -> (dims, values, attrs)`` coordinate variables along ``context`` (registered in WORKLOADS)."""
    return {name: (WORKLOADS[name].dims, values, WORKLOADS[name].attrs()) for name, values in (("isl", isl), ("osl", osl))}


def economics_arrays(hw_names: list[str], overrides) -> dict[str, np.ndarray]:
    """``{price_per_gpu_hour, board_power}`` per accelerator, float64: the catalogue's values
    (a design-space name ``b200|hbm_bwx2`` takes its base accelerator's), replaced by
    ``grid.economics.<field>.<name>`` where set (keyed by catalogue name)."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise SpecError(
            f"grid.economics = {plain(overrides)!r} is invalid: a mapping such as "
            "{price_per_gpu_hour: {h100-sxm: 2.5}, board_power: {h100-sxm: 700}} (USD per GPU-hour, W)"
        )
    overrides = overrides or {}
    bad = set(overrides) - set(ECONOMICS_FIELDS)
    if bad:
        raise SpecError(f"grid.economics.{min(bad)} is not a known field: allowed {', '.join(ECONOMICS_FIELDS)}")
    bases = [name.split("|")[0] for name in hw_names]
    for field, table in overrides.items():
        if table is not None and not isinstance(table, Mapping):
            raise SpecError(f"grid.economics.{field} = {plain(table)!r} is invalid: a mapping from hardware name to value")
        for name, value in (table or {}).items():
            if name not in bases:
                raise SpecError(
                    f"grid.economics.{field} = {plain(table)!r} is invalid: {name} is not a grid hardware name "
                    f"(allowed {', '.join(dict.fromkeys(bases))})"
                )
            if not _positive_number(value):
                raise SpecError(f"grid.economics.{field}.{name} = {value!r} is invalid: a positive number")
    unique, index = np.unique(np.array(bases), return_inverse=True)  # one catalogue read per accelerator
    out = {f: np.full(len(unique), np.nan) for f in ECONOMICS_FIELDS}
    for u, base in enumerate(unique.tolist()):
        given = {f: (overrides.get(f) or {}).get(base) for f in ECONOMICS_FIELDS}
        entry = hardware_entry(base)
        if all(entry.get(f) is not None or given[f] is not None for f in ECONOMICS_FIELDS):
            econ = hardware_economics(base, **given)
            for f in ECONOMICS_FIELDS:
                out[f][u] = getattr(econ, f)
        # else: a hardware file without economics (not a catalogue entry): no cost (NaN), not an error
    return {f: v[index.reshape(-1)] for f, v in out.items()}


ECONOMICS_VARIABLES = {f: f"hw_{f}" for f in ECONOMICS_FIELDS}  # field -> registered name (engine/variables.py)


def economics_derive(economics: dict[str, np.ndarray], prefixes: list[str], float_dtype: str):
    """``derive(nc)`` adding ``<prefix>cost_per_mtok`` (USD per million output tokens) and
    ``<prefix>joules_per_token`` (J per output token) beside every ``<prefix>throughput_per_gpu``
    in the open dataset: ``serving.cost_per_mtok(price, x)`` and ``serving.joules_per_token(power, x)``
    in float64 from the stored float values, stored in the dataset's float dtype; NaN where the
    throughput is NaN or not positive (nothing served)."""

    def derive(nc) -> None:
        for prefix in prefixes:
            src = nc.variables[f"{prefix}throughput_per_gpu"]
            dims = src.dimensions
            shape = [1] * len(dims)
            shape[dims.index("hardware")] = -1
            x = np.ma.filled(src[:], np.nan).astype(np.float64)
            x = np.where(x > 0, x, np.nan)
            price = economics["price_per_gpu_hour"].reshape(shape)
            power = economics["board_power"].reshape(shape)
            outputs = economics_variables(prefix, dims)
            create_variable(nc, outputs[f"{prefix}cost_per_mtok"], float_dtype, cost_per_mtok(price, x))
            create_variable(nc, outputs[f"{prefix}joules_per_token"], float_dtype, joules_per_token(power, x))

    return derive


def serving_derive(plan, frontier_names: list[str], float_dtype: str):
    """``derive(nc)`` for a sweep: the ``isl``/``osl`` variables along ``context`` (workload
    grids), ``hw_price_per_gpu_hour``/``hw_board_power`` per hardware, and $/Mtok and J/token
    (``economics_derive``) beside the B_max result (``cost_per_mtok``), every frontier level
    (``frontier_``), the SLO pick (``slo_``) and aggregated/disaggregated serving (``serving_*``)."""
    prefixes = [""] + [
        p
        for p in ("frontier_", "slo_", "slo_disaggregated_", "serving_", "serving_disaggregated_")
        if f"{p}throughput_per_gpu" in frontier_names
    ]
    costs = economics_derive(plan.economics, prefixes, float_dtype)

    def derive(nc) -> None:
        for name, (_, values, _) in plan.context_coords.items():
            create_variable(nc, WORKLOADS[name], float_dtype, values, compress=False, nan_fill=False)
        for field, name in ECONOMICS_VARIABLES.items():
            create_variable(nc, ECONOMICS[name], float_dtype, plan.economics[field], compress=False, nan_fill=False)
        costs(nc)

    return derive
