"""The self-contained HTML report of a sweep dataset, written by ``python -m moejax.report``.

One page, no server and no network: plotly.js is inlined (``plotly.offline.get_plotlyjs``), the
data for every selection is embedded once (JSON, gzip, base64; the page inflates it with the
browser's ``DecompressionStream``) and ``report.js`` draws the panels with ``Plotly.react`` when a
``<select>`` changes. Selectors: model, hardware, GPUs, context; the accounting is a dataset
attribute (one dataset, one accounting), shown in a disabled selector.

Panels, each only when the dataset has its variables (else a one-line note in the page):

- ``frontier``: decode tokens/s per GPU against tokens/s per user (``frontier_throughput_per_gpu``
  on the ``interactivity`` levels), the MoE and its dense baseline at every κ, $/Mtok
  (``frontier_cost_per_mtok``, USD) and J/token (``frontier_joules_per_token``, J) on hover;
- ``kappa_star_frontier``: break-even κ* against tokens/s per user (found levels only, the flag
  of every level on hover);
- ``kappa_star``: κ* over context × GPUs for the selected model and hardware (value or flag);
- ``bound``: what bounds the MoE step over context × GPUs (compute / HBM / communication / infeasible);
- ``sensitivity``: the ``elasticity_*`` variables at the selected point, MoE and every κ;
- ``validation``: predicted against measured from ``python -m moejax.validate``'s
  ``validation.csv`` (when given), coloured by a chosen column (figure, phase, firmness, bound,
  dominant).

Numbers are embedded at 4 significant figures; NaN, infinite and non-positive throughputs (the
sweep stores infeasible and unreachable points as 0) as null, which Plotly leaves out.
"""

from __future__ import annotations

import base64
import csv
import gzip
import html
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import xarray as xr

from ..analysis.summary import best_per_point, context_label, flag_meanings
from .sensitivity import ELASTICITY_LABELS

JS = Path(__file__).with_name("report.js")
DEFAULT = {"model": "deepseek-v3", "hardware": "b200", "context": 8192.0}  # as moejax.plot's README figures
BOUND_COLOURS = {"compute": "#4477aa", "hbm": "#ee6677", "communication": "#ccbb44", "infeasible": "#bbbbbb"}
GROUP_COLUMNS = ("figure", "phase", "firmness", "bound", "dominant")  # validation.csv columns to colour by
PROVENANCE = (
    "title",
    "source",
    "grid",
    "accounting_mode",
    "accounting",
    "expert_traffic",
    "roofline",
    "integer_batch",
    "dense_baseline_family",
    "batch_policy",
    "partition_search",
    "partition_space",
    "precision",
    "comment",
)
POINT = ("model", "hardware", "num_gpus", "context")  # the selectors' dimensions, in the embedded arrays' order


def compact(a, digits: int = 4, positive: bool = False) -> list:
    """``a`` as nested lists of floats rounded to ``digits`` significant figures, with None where
    not finite (and, with ``positive``, where <= 0)."""
    a = np.asarray(a, dtype=float)
    ok = np.isfinite(a) & ((a > 0) if positive else True)
    v = np.where(ok, a, 1.0)
    p = digits - 1 - np.floor(np.log10(np.abs(np.where(v == 0, 1.0, v))))
    up, down = 10.0 ** np.maximum(p, 0), 10.0 ** np.maximum(-p, 0)  # exact powers of ten: short decimal reprs
    r = np.round(v * up / down) * down / up
    return np.where(ok, r, None).tolist()


def _point(da: xr.DataArray, *trailing: str) -> xr.DataArray:
    return da.transpose(*POINT, *trailing)


def _curves(ds: xr.Dataset, name: str, trailing: tuple) -> np.ndarray:
    """``[model, hardware, num_gpus, context, curve, *trailing]``: curve 0 the MoE (its rows repeat
    along κ), then the dense baseline at each κ."""
    moe = _point(ds[name].sel(variant="moe").isel(kappa=0), *trailing).values[:, :, :, :, None]
    dense = _point(ds[name].sel(variant="dense"), "kappa", *trailing).values
    return np.concatenate([moe, dense], axis=4)


def _colours(n: int) -> list[str]:
    """The MoE in black, the dense curves along plasma (as ``moejax.plot``)."""
    import plotly.colors

    dense = plotly.colors.sample_colorscale("Plasma", [0.1 + 0.7 * i / max(n - 1, 1) for i in range(n)])
    return ["#000000", *dense]


def _discrete(colours: list[str]) -> list:
    """A Plotly colour scale giving integer code i (of len(colours), z from -0.5 to n - 0.5) colour i."""
    n = len(colours)
    return [stop for i, c in enumerate(colours) for stop in ([i / n, c], [(i + 1) / n, c])]


def _grid_layout(title: str, ds: xr.Dataset) -> dict:
    return go.Layout(
        title=title,
        xaxis={"title": "context length (tokens)", "type": "category"},
        yaxis={"title": "GPUs in the cluster", "type": "category"},
        margin={"t": 60},
    ).to_plotly_json()


def _frontier(ds: xr.Dataset, curves: list[str]) -> dict:
    econ = [v for v in ("frontier_cost_per_mtok", "frontier_joules_per_token") if v in ds]
    hover = "%{fullData.name}<br>at least %{x:.3g} tokens/s per user: %{y:.4g} tokens/s per GPU"
    if "frontier_cost_per_mtok" in econ:
        hover += "<br>$%{customdata[0]:.4g} per million output tokens"
    if "frontier_joules_per_token" in econ:
        hover += "<br>%{customdata[1]:.4g} J per output token"
    trailing = ("interactivity",)
    return {
        "levels": compact(ds.interactivity.values),
        "curves": curves,
        "colours": _colours(len(curves) - 1),
        "tput": compact(_curves(ds, "frontier_throughput_per_gpu", trailing), positive=True),
        "cost": compact(_curves(ds, "frontier_cost_per_mtok", trailing)) if "frontier_cost_per_mtok" in ds else None,
        "joules": compact(_curves(ds, "frontier_joules_per_token", trailing)) if "frontier_joules_per_token" in ds else None,
        "hover": hover + "<extra></extra>",
        "layout": go.Layout(
            title="Serving frontier: decode throughput per GPU vs interactivity (best partition and batch)",
            xaxis={"title": "interactivity (output tokens/s per user, at least)", "type": "log"},
            yaxis={"title": "decode throughput per GPU (tokens/s/GPU)", "type": "log"},
            legend={"title": {"text": "unreachable levels omitted"}},
        ).to_plotly_json(),
    }


def _kappa_star_frontier(ds: xr.Dataset) -> dict:
    flags = flag_meanings(ds.kappa_star_frontier_reason) if "kappa_star_frontier_reason" in ds else {}
    reason = (
        _point(ds.kappa_star_frontier_reason, "interactivity").values.astype(int)
        if flags
        else np.zeros(_point(ds.kappa_star_frontier, "interactivity").shape, int)
    )
    names = np.vectorize(lambda v: flags.get(int(v), "found").replace("_", " "), otypes=[object])(reason)
    return {
        "levels": compact(ds.interactivity.values),
        "value": compact(_point(ds.kappa_star_frontier, "interactivity").values),
        "reason": names.tolist(),
        "layout": go.Layout(
            title="Break-even κ* along the serving frontier (the MoE is cheaper where κ > κ*)",
            xaxis={"title": "interactivity (output tokens/s per user, at least)", "type": "log"},
            yaxis={"title": "κ* (dense at its own frontier)", "type": "log"},
        ).to_plotly_json(),
    }


def _kappa_star(ds: xr.Dataset) -> dict:
    value = _point(ds.kappa_star).values.astype(float)
    flags = flag_meanings(ds.reason) if "reason" in ds else {}
    reason = _point(ds.reason).values.astype(int) if flags else np.zeros(value.shape, int)
    text = np.vectorize(
        lambda v, r: f"{v:.3g}" if flags.get(int(r), "found") == "found" and np.isfinite(v) else flags[int(r)].replace("_", " "),
        otypes=[object],
    )(value, reason)
    return {
        "value": compact(value),
        "text": text.tolist(),
        "layout": _grid_layout("Break-even κ* at B_max (cells without a value: the flag of the point)", ds),
    }


def _bound(ds: xr.Dataset) -> dict:
    flags = flag_meanings(ds.bound)
    codes = sorted(flags)
    meanings = [flags[c] for c in codes]
    code = _point(ds.bound.sel(variant="moe").isel(kappa=0)).values
    return {
        "code": np.searchsorted(codes, code).tolist(),
        "meanings": meanings,
        "colorscale": _discrete([BOUND_COLOURS.get(m, "#000000") for m in meanings]),
        "layout": _grid_layout("What bounds the MoE decode step at B_max", ds),
    }


def _sensitivity(ds: xr.Dataset, names: list[str], curves: list[str]) -> dict:
    values = np.stack([_curves(ds, n, ()) for n in names], axis=-1)  # [..., curve, variable]
    return {
        "labels": [ELASTICITY_LABELS.get(n[len("elasticity_") :], n[len("elasticity_") :]) for n in names],
        "curves": curves,
        "colours": _colours(len(curves) - 1),
        "values": compact(values),
        "layout": go.Layout(
            title="Sensitivity: elasticity ∂log(tokens/s/GPU) / ∂log(x) at the winning partition",
            barmode="group",
            xaxis={"title": "hardware quantity x"},
            yaxis={"title": "elasticity (dimensionless)"},
        ).to_plotly_json(),
    }


def read_validation(path: Path) -> list[dict]:
    """The rows of ``validation.csv`` (``python -m moejax.validate``): id, measured, predicted and
    the group columns; rows without a finite positive prediction are kept with ``predicted`` None."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("id", "measured", "predicted") if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"no {', '.join(missing) or 'rows'}")
    out = []
    for r in rows:
        measured, predicted = float(r["measured"]), float(r["predicted"]) if r["predicted"] not in ("", "nan") else np.nan
        out.append(
            {
                "id": r["id"],
                "measured": measured,
                "predicted": predicted if np.isfinite(predicted) and predicted > 0 else None,
                **{c: r.get(c, "") for c in GROUP_COLUMNS},
            }
        )
    return out


def _validation(rows: list[dict]) -> dict:
    return {
        "rows": rows,
        "groups": [c for c in GROUP_COLUMNS if any(r[c] for r in rows)],
        "layout": go.Layout(
            title="Validation: predicted against measured (each point in its figure's SI unit; the line: predicted = measured)",
            xaxis={"title": "measured", "type": "log"},
            yaxis={"title": "predicted", "type": "log"},
        ).to_plotly_json(),
    }


def _default_index(ds: xr.Dataset) -> dict:
    names = {d: [str(v) for v in ds[d].values] for d in ("model", "hardware")}
    index = {d: names[d].index(DEFAULT[d]) if DEFAULT[d] in names[d] else 0 for d in ("model", "hardware")}
    feas = ds.feasible.sel(variant="moe").isel(kappa=0, model=index["model"], hardware=index["hardware"]).any("context").values
    index["num_gpus"] = int(np.flatnonzero(feas)[-1]) if feas.any() else ds.sizes["num_gpus"] - 1
    index["context"] = int(np.argmin(np.abs(np.log(ds.context.values / DEFAULT["context"]))))
    return index


def payload(ds: xr.Dataset, validation: list[dict] | None = None) -> tuple[dict, list[str]]:
    """The embedded data (``dims``, ``default`` selection indices and one entry per panel drawn)
    and the notes for the panels left out."""
    ds = best_per_point(ds)
    curves = ["MoE", *(f"dense, κ = {float(k):g}" for k in ds.kappa.values)]
    data = {
        "dims": {
            "model": [str(v) for v in ds.model.values],
            "hardware": [str(v) for v in ds.hardware.values],
            "num_gpus": [str(int(v)) for v in ds.num_gpus.values],
            "context": [context_label(c) for c in ds.context.values],
        },
        "default": _default_index(ds),
    }
    notes = []
    if "frontier_throughput_per_gpu" in ds:
        data["frontier"] = _frontier(ds, curves)
    else:
        notes.append(
            "frontier: no frontier_* variables (the sweep ran without grid.batches, the serving frontier): panel omitted"
        )
    if "kappa_star_frontier" in ds:
        data["kappa_star_frontier"] = _kappa_star_frontier(ds)
    else:
        notes.append("κ* along the frontier: no kappa_star_frontier (breakeven.include=true with grid.batches): panel omitted")
    if "kappa_star" in ds:
        data["kappa_star"] = _kappa_star(ds)
    else:
        notes.append("κ* map: no kappa_star (breakeven.include=true): panel omitted")
    data["bound"] = _bound(ds)
    elasticities = [n for n in ds.data_vars if n.startswith("elasticity_")]
    if elasticities:
        data["sensitivity"] = _sensitivity(ds, elasticities, curves)
    else:
        notes.append("sensitivities: no elasticity_* variables (sensitivities=true): panel omitted")
    if validation:
        data["validation"] = _validation(validation)
    else:
        notes.append("validation: no validation.csv given (--validation, from python -m moejax.validate): panel omitted")
    return data, notes


def _select(dim: str, label: str, options: list[str], chosen: int, disabled: bool = False) -> str:
    opts = "".join(
        f'<option value="{i}"{" selected" if i == chosen else ""}>{html.escape(o)}</option>' for i, o in enumerate(options)
    )
    return f'<label>{label} <select id="select-{dim}" data-dim="{dim}"{" disabled" if disabled else ""}>{opts}</select></label>'


def _provenance(ds: xr.Dataset) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(ds.attrs[k]))}</td></tr>" for k in PROVENANCE if k in ds.attrs
    )
    details = "".join(
        f"<details><summary>{k}</summary><pre>{html.escape(str(ds.attrs[k]))}</pre></details>"
        for k in ("config", "resolved_specs")
        if k in ds.attrs
    )
    return f"<table>{rows}</table>{details}"


STYLE = """body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
#controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:10}
#controls label{margin-right:1.2em}.plot{width:100%;height:480px}.note{color:#666;margin:.2em 0}
table{border-collapse:collapse;font-size:90%}th,td{text-align:left;padding:2px 8px;border-bottom:1px solid #eee;vertical-align:top}
pre{white-space:pre-wrap;font-size:85%;background:#f7f7f7;padding:.5em}"""  # noqa: E501
PANEL_IDS = ("frontier", "kappa_star_frontier", "kappa_star", "bound", "sensitivity", "validation")


def build_html(ds: xr.Dataset, name: str, validation: list[dict] | None = None) -> str:
    """The whole page for dataset ``ds`` (``name`` in its title), ``validation`` rows from
    ``read_validation`` or None."""
    data, notes = payload(ds, validation)
    blob = base64.b64encode(gzip.compress(json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), 6, mtime=0))
    dims, index = data["dims"], data["default"]
    accounting = str(ds.attrs.get("accounting_mode", "unknown"))
    controls = " ".join(
        [
            _select("model", "model", dims["model"], index["model"]),
            _select("hardware", "hardware", dims["hardware"], index["hardware"]),
            _select("num_gpus", "GPUs", dims["num_gpus"], index["num_gpus"]),
            _select("context", "context (tokens)", dims["context"], index["context"]),
            _select("accounting", "accounting", [accounting], 0, disabled=True),
        ]
    )
    if "validation" in data:
        groups = data["validation"]["groups"]
        controls += (
            ' <label>validation colour <select id="select-group" data-role="group">'
            + "".join(f'<option value="{g}">{g}</option>' for g in groups)
            + "</select></label>"
        )
    panels = "".join(f'<section id="panel-{p}"><div class="plot" id="plot-{p}"></div></section>' for p in PANEL_IDS if p in data)
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    title = f"moejax report: {name}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(str(ds.attrs.get('title', '')))}; accounting "
        f"<b>{html.escape(accounting)}</b> (one dataset, one accounting); {html.escape(str(ds.attrs.get('source', '')))}</p>"
        f'<div id="controls">{controls}</div><div id="notes">{note_html}</div>{panels}'
        f'<section id="provenance"><h2>Provenance</h2>{_provenance(ds)}</section>'
        f'<script type="text/plain" id="moejax-data">{blob.decode()}</script>'
        f"<script>{JS.read_text()}</script></body></html>\n"
    )
