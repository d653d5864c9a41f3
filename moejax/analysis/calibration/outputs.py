"""A calibration's outputs: the text report (fitted constants, residual table,
identifiability), the one-line JSON summary, the dataset, and ``residuals.csv`` +
``calibration.nc``."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...engine.interrupts import deferred
from ...physics.specs import SpecError
from ...version import __version__
from .constants import CONSTANTS
from .solve import RESIDUAL_FIELDS, CalibrationResult

if TYPE_CHECKING:
    import xarray as xr

SHORT_NOTES = (("normaliser", "normaliser"), ("printed twice", "duplicate"), ("held out", "held out"))


def _fmt(quantity: str, v: float) -> str:
    if not math.isfinite(v):
        return "inf" if v > 0 else "nan"
    if quantity == "b_max":
        return f"{v:.0f}"
    return f"{v:.4g}"


def _pct(v: float) -> str:
    return "" if not math.isfinite(v) else f"{100 * v:+.1f}%"


def _short(note: str) -> str:
    if not note:
        return ""
    for prefix, tag in SHORT_NOTES:
        if note.startswith(prefix):
            return tag
    return "excluded: " + note.split(":")[0]


def _value(name: str, v: float) -> str:
    c = CONSTANTS[name]
    return f"{v / c.unit:.6g} {c.unit_name}" if c.unit_name != "1" else f"{v:.6g}"


def report(res: CalibrationResult) -> str:
    """The fitted constants, residual table and identifiability summary as text."""
    lines = [f"reference: {res.reference.source}", ""]
    for r in res.fits:
        f = r.fit
        lines.append(f"== fit {f.name}: {f.description}".rstrip(": "))
        lines.append(
            f"   partition {f.partition}, expert_traffic {f.expert_traffic}, roofline {f.roofline}"
            + (f", inherits {f.inherit}" if f.inherit else "")
            + f"; {int(r.fitted_mask.sum())} targets fitted of {len(r.targets)}; loss {r.loss_start:.4g} -> {r.loss:.4g}; "
            f"rms log residual {r.rms_log_residual:.4g}"
        )
        for name in CONSTANTS:
            v = r.constants[name]
            if name in r.fitted:
                tag = "fitted" + (" (at its bound)" if name in r.at_bound else "")
            elif f.inherit and name not in f.fixed and name in _fitted_upstream(res, f.inherit):
                tag = f"from {f.inherit}"
            elif name in f.fixed:
                tag = "fixed"
            else:
                tag = "default"
            if tag != "default" or name in f.probe:
                lines.append(f"   {name:<20} = {_value(name, v):<16} {tag}{'  [probed]' if name in f.probe else ''}")
        for pat, why in f.exclude.items():
            lines.append(f"   excluded {pat}: {why}")
        lines.append("")
    header = (
        f"{'fit':<17} {'target':<20} {'published':>9} {'default':>9} {'calibrated':>10} {'res(def)':>9} {'res(cal)':>9} "
        "ok  partition         note"
    )
    lines += ["Residuals (res = predicted/published - 1; ok = prints as published; * = in the loss)", header, "-" * len(header)]
    for row in res.table:
        q = str(row["quantity"])
        lines.append(
            f"{row['fit']:<17} {row['id']:<20} {row['printed']:>9} {_fmt(q, row['physical_default']):>9} "
            f"{_fmt(q, row['calibrated']):>10} {_pct(row['rel_residual_default']):>9} {_pct(row['rel_residual_calibrated']):>9} "
            f"{'y' if row['reproduced'] else 'n'}{'*' if row['fitted'] else ' '}  {row['partition']:<17} "
            f"{_short(str(row['note']))}"
        )
    lines += ["", "Identifiability (J = d log prediction / d coordinate over the fitted targets, at the optimum)"]
    for r in res.fits:
        sv = r.singular_values
        rel = sv / sv[0] if sv.size and sv[0] > 0 else sv
        lines.append(f"   {r.fit.name}: coordinates {', '.join(r.coordinates)}")
        lines.append(
            f"   {' ' * len(r.fit.name)}  singular values {', '.join(f'{s:.3g}' for s in sv)} "
            f"(relative {', '.join(f'{x:.2g}' for x in rel)})"
        )
        if not r.unidentifiable:
            lines.append(f"   {' ' * len(r.fit.name)}  every free and probed constant is identified")
        for name, vec in zip(r.unidentifiable, r.null_vectors):
            combo = " ".join(f"{vec[i]:+.3f}*[{c}]" for i, c in enumerate(r.coordinates) if abs(vec[i]) > 1e-9)
            lines.append(f"   {' ' * len(r.fit.name)}  unidentifiable: {name}   (null direction {combo})")
    lines.append(f"\nrms log residual over fitted targets (exact integer-batch model): {res.rms_log_residual:.4g}")
    return "\n".join(lines)


def _fitted_upstream(res: CalibrationResult, name: str) -> set:
    names = set()
    while name:
        r = next(x for x in res.fits if x.fit.name == name)
        names |= set(r.fitted)
        name = r.fit.inherit
    return names


def summary_json(res: CalibrationResult) -> str:
    rms = res.rms_log_residual if math.isfinite(res.rms_log_residual) else None
    return json.dumps({"constants": res.constants, "rms_log_residual": rms, "unidentifiable": res.unidentifiable})


def dataset(res: CalibrationResult) -> xr.Dataset:
    """The residual table (dim ``entry``: one row per fit and target) with the fitted constants
    (dims ``fit``, ``constant``) and singular values (dims ``fit``, ``component``)."""
    import xarray as xr  # here, not at the top: the validate CLI imports this package and never writes a dataset (startup time)

    t = res.table
    units = {
        "published": "paper's unit (sequences, percent or relative units)",
        "physical_default": "as published",
        "calibrated": "as published",
        "rel_residual_default": "1",
        "rel_residual_calibrated": "1",
        "log_residual_calibrated": "1",
    }
    data = {}
    for name, dtype in RESIDUAL_FIELDS:
        values = t[name]
        if dtype.startswith("U"):
            values = values.astype(object)
        elif dtype == "?":
            values = values.astype(np.int8)
        attrs = {"long_name": name.replace("_", " ")}
        if name in units:
            attrs["units"] = units[name]
        data[name] = ("entry", values, attrs)
    fits = [r.fit.name for r in res.fits]
    data["fit_name"] = data.pop("fit")
    names = list(CONSTANTS)
    values = np.array([[r.constants[n] for n in names] for r in res.fits])
    free = np.array([[n in r.fitted for n in names] for r in res.fits], dtype=np.int8)
    width = max(len(r.singular_values) for r in res.fits)
    sv = np.full((len(fits), width), np.nan)
    for i, r in enumerate(res.fits):
        sv[i, : len(r.singular_values)] = r.singular_values
    data["constant_value"] = (("fit", "constant"), values, {"long_name": "constant used by the fit (SI units)"})
    data["constant_fitted"] = (("fit", "constant"), free, {"long_name": "1 where the fit optimised the constant"})
    data["singular_value"] = (("fit", "component"), sv, {"long_name": "singular values of d log prediction / d coordinate"})
    return xr.Dataset(
        data,
        coords={"fit": np.array(fits, dtype=object), "constant": np.array(names, dtype=object)},
        attrs={
            "title": "moejax calibration of accounting constants",
            "source": f"moejax {__version__}",
            "reference": res.reference.source,
            "summary": summary_json(res),
            "unidentifiable": "; ".join(res.unidentifiable) or "none",
        },
    )


def write_outputs(res: CalibrationResult, out: Path) -> tuple[Path, Path]:
    """``residuals.csv`` and ``calibration.nc`` in ``out``, each written to a temporary name first."""
    from ...engine.dataset import disk_full_is_one_line  # here: as xarray (startup time)

    ds = dataset(res)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    csv_path, nc_path = out / "residuals.csv", out / "calibration.nc"
    tmp_csv, tmp_nc = out / ".residuals.csv.tmp", out / ".calibration.nc.tmp"
    try:
        with disk_full_is_one_line("out", out, ds.nbytes):
            with open(tmp_csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow([name for name, _ in RESIDUAL_FIELDS])
                for row in res.table:
                    w.writerow([row[name].item() for name, _ in RESIDUAL_FIELDS])
            with deferred():  # no signal raises inside HDF5
                ds.to_netcdf(tmp_nc, engine="netcdf4")
    except BaseException as e:
        for p in (tmp_csv, tmp_nc):
            p.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        if isinstance(e, OSError):
            raise SpecError(f"out = {str(out)!r} is invalid: cannot write there ({e.strerror or e})") from None
        raise
    os.replace(tmp_csv, csv_path)
    os.replace(tmp_nc, nc_path)
    return csv_path, nc_path
