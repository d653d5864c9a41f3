"""80 % prediction intervals in a sweep: ``*_lo`` and ``*_hi`` beside the central values, from the
accounting preset's interval table (``intervals:``, written by the serving fit; rule and coverage in
``analysis.validation.intervals``).

Per accelerator of the grid, ``intervals.lookup(table, None, name)`` gives the factors ``[lo, hi]`` on a
TPOT and on a TTFT prediction (any engine: a sweep names none) and whether the case is calibrated or
extrapolated (an accelerator or family the fit never saw, a design-space variant among them). Stored:

- ``interval`` (per hardware): calibrated, extrapolated or none, the reason of each in its attributes;
- ``step_time_lo/hi`` = step_time · [lo, hi] (the TPOT factors: a decode step is one output token);
- ``throughput_per_gpu_lo/hi`` = throughput_per_gpu / [hi, lo] (tokens per step are fixed);
- ``<prefix>ttft_lo/hi`` = ``<prefix>ttft`` · the TTFT factors, for every TTFT the sweep holds.

A preset without a table (``sol``, ``kernel``, ``layered``), or one changed by ``grid.accounting`` overrides
(the table belongs to the fitted constants), gets ``interval = none`` everywhere and no bounds.
Written with the main job's derived columns (``analysis.qs.sweep_columns``), so not with
``keep_partitions=true``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...engine.dataset import create_variable
from ...engine.variables import INTERVAL, INTERVAL_RULES, POINT, interval_variables
from . import intervals


def interval_table(accounting) -> tuple[dict | None, str]:
    """(the preset's interval table, or None, and why there is none) for ``grid.accounting``."""
    overridden = [f.name for f in dataclasses.fields(accounting) if f.name != "mode" and getattr(accounting, f.name) is not None]
    if overridden:
        return None, f"grid.accounting.{overridden[0]} changes the fitted preset: its intervals do not apply"
    table = intervals.load(accounting.mode)
    if table is None:
        return None, f"accounting {accounting.mode} has no calibrated intervals (a serving fit, fit=true, writes them)"
    return table, ""


def hardware_bands(table: dict | None, why: str, hardware: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(rule code per accelerator, factors [hardware, figure (tpot, ttft), (lo, hi)], reasons).

    >>> table = {"systems": ["h200"], "cells": {}, "backends": {}, "families": {"hopper": {"n": 30,
    ...     "tpot": [0.8, 1.25], "ttft": [0.5, 2.0]}}, "all": None, "new_system": {}, "new_backend": {}}
    >>> rules, factors, _ = hardware_bands(table, "", ["h200"])
    >>> int(rules[0]), factors[0].tolist()
    (0, [[0.8, 1.25], [0.5, 2.0]])
    """
    rules = np.full(len(hardware), INTERVAL_RULES.index("none"), dtype=np.int8)
    factors = np.full((len(hardware), len(intervals.FIGURES), 2), np.nan)
    reasons = [why] * len(hardware)
    for i, name in enumerate(hardware if table is not None else ()):
        bd, status, reasons[i] = intervals.lookup(table, None, name)
        rules[i] = INTERVAL_RULES.index(status)
        if bd is not None:
            factors[i] = [bd[k] for k in intervals.FIGURES]
    return rules, factors, reasons


def bounds_bytes(accounting, plan, hooks, float_dtype: str) -> int:
    """Bytes of the ``*_lo``/``*_hi`` variables ``interval_writer`` adds to a sweep of ``plan`` (0 when
    the preset has no table): two bounds of step_time and throughput_per_gpu per point, and two of
    every ``*ttft`` the frontier (``hooks``) writes, for the size check before computing."""
    if interval_table(accounting)[0] is None:
        return 0
    points = math.prod(len(plan.coords[d][0]) for d in POINT)
    per_point = 2 * len(("step_time", "throughput_per_gpu"))
    ttfts = [v for v in hooks.variables if v.name.endswith("ttft")]
    per_point += sum(2 * math.prod(len(hooks.dims[d][0]) for d in v.dims[len(POINT) :]) for v in ttfts)
    return points * per_point * np.dtype(float_dtype).itemsize


def bounds_counter(accounting):
    """``derived_bytes(plan, hooks, float_dtype)`` for ``engine.run.run``: the bytes of the bounds
    ``interval_writer(accounting, ...)`` will add (the sweep's size check counts them)."""
    return lambda plan, hooks, float_dtype: bounds_bytes(accounting, plan, hooks, float_dtype)


def interval_writer(accounting, hardware: list[str]):
    """``derive(nc)`` adding the interval variables (module docstring) to the open sweep dataset
    (``accounting``: ``grid.accounting``; ``hardware``: the grid's accelerator names)."""
    table, why = interval_table(accounting)
    rules, factors, reasons = hardware_bands(table, why, hardware)
    tpot, ttft = factors[:, 0], factors[:, 1]

    def derive(nc) -> None:
        float_dtype = str(nc["throughput_per_gpu"].dtype)
        said = [
            f"{h}: {INTERVAL_RULES[r]}" + (f" ({because})" if because else "") for h, r, because in zip(hardware, rules, reasons)
        ]
        attrs = {**INTERVAL.attrs(), "reasons": "; ".join(said)}
        create_variable(nc, INTERVAL, float_dtype, rules, attrs=attrs, compress=False)
        if table is None:
            return
        central = {"step_time": (tpot, False), "throughput_per_gpu": (tpot, True)}
        central.update({name: (ttft, False) for name in nc.variables if name.endswith("ttft")})
        for name, (f, inverse) in central.items():
            src = nc.variables[name]
            dims = src.dimensions
            shape = [1] * len(dims)
            shape[dims.index("hardware")] = -1
            x = np.ma.filled(src[:], np.nan).astype(np.float64)
            lo, hi = f[:, 0].reshape(shape), f[:, 1].reshape(shape)
            bounds = (x / hi, x / lo) if inverse else (x * lo, x * hi)
            outputs = interval_variables(name, dims, src.getncattr("units"))
            for suffix, values in zip(("_lo", "_hi"), bounds):
                create_variable(nc, outputs[name + suffix], float_dtype, values)

    return derive
