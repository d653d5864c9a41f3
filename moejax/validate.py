"""Validation job: ``python -m moejax.validate`` (Hydra config ``conf/validate.yaml``).

Evaluates every usable entry of a measurement file (default: the published serving results,
``moejax/data/reference/serving/measurements.yaml``, vendored in the package) as deployed, at the
accounting ``accounting=realistic|sol|kernel|layered`` (``conf/accounting/``), prints the residual table (id,
measured, predicted, ratio, bound, dominant term, notes), the not-expressible and skipped points,
writes ``validation.csv`` and ``summary.json`` to the run directory (or ``out=DIR``) and ends with
one JSON line ``{"n", "evaluated", "skipped", "not_expressible", "infeasible",
"median_abs_log_ratio", "p90_abs_log_ratio", "predicted"}`` (with an accounting that has an interval
table, each predicted entry gains the 80 % interval fields and the line ``"interval_coverage"``; plus
``"fit"`` with ``fit=true``:
fitted constants, in-sample and leave-one-out predictions and statistics; the fitted accounting
YAML goes to ``calibration.write`` or ``layered.yaml`` in the output directory: a global fit, of
the previous release's kind; a per-layer latency on top of a preset with kernel fixed costs is refused).
A file whose header is AIConfigurator's silicon CSV (measured closed-loop serving benchmarks) is
predicted as serving benchmarks instead (``moejax.physics.served``): TPOT and TTFT per row, the
per-group table (backend, system, model, mode), the rows moejax cannot express by id with their
reason, ``serving.csv`` and ``summary.json``, and the JSON line ``{"n", "evaluated",
"not_expressible", "infeasible", "tpot_*", "ttft_*", "groups", "predicted": {id: {"tpot", "ttft",
"throughput_per_gpu", "tokens_per_s_per_user", "batch", "tpot_lo", "tpot_hi", "ttft_lo", "ttft_hi",
"interval", "interval_reason"}}}`` (the 80 % interval of the accounting preset's ``intervals:`` table,
``moejax.analysis.validation.intervals``); with ``fit=true`` the constants ``calibration.serving_free``
(``calibration.serving_profiled`` per engine profile) are fitted on top of the accounting preset with
grouped cross-validation (leave one model, system, backend out),
and the interval table and its nested coverage come from the out-of-sample residuals.
Bad input stops with one line ``error: ...`` on stderr, exit code 2, and no output files.
Library: ``moejax.analysis.validation``; the contract is docs/validation.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import jax
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .analysis import validation as val
from .analysis.validation import benchmarks, intervals, serving_fit, serving_report, silicon, stack_fit
from .catalogue import CONF_DIR, ROOT, available, load_accounting
from .cli import one_line_errors, path_value, run_command
from .engine.dataset import check_writable, whole_outputs, write_text
from .physics.kernels import KERNEL_CLASSES
from .physics.specs import SpecError, replace


def repo_path(value) -> Path:
    """A path from the config: absolute as given, relative to the repository root otherwise (``ROOT``;
    the packaged files, ``moejax/data/...``, resolve there in an installed wheel too, where a path
    that is not one of them is relative to the current directory)."""
    path = Path(str(value)).expanduser()
    if path.is_absolute():
        return path.resolve()
    clone = CONF_DIR.parent == ROOT  # conf/ beside the package: a clone or an editable install
    return (ROOT / path if clone or (ROOT / path).exists() else path).resolve()


CALIBRATION_FIELDS = (
    "free",
    "per_family",
    "steps",
    "serving_free",
    "serving_profiled",
    "serving_steps",
    "learning_rate",
    "write",
)


def serving_settings(cfg: DictConfig) -> tuple[tuple[str, ...], tuple[str, ...], int, float]:
    """(free constants, the per-engine-profile ones among them, Adam steps, learning rate) of a
    serving fit, from ``calibration.serving_*``; the names checked as ``calibration.free``'s."""
    c = OmegaConf.to_container(cfg.calibration, resolve=True)
    steps, rate = c.get("serving_steps"), c.get("learning_rate")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SpecError(f"calibration.serving_steps = {steps!r} is invalid: must be an integer >= 1")
    for key in ("serving_free", "serving_profiled"):
        if not isinstance(c.get(key), list) or not all(isinstance(x, str) for x in c[key]):
            raise SpecError(f"calibration.{key} = {c.get(key)!r} is invalid: must be a list of Accounting constant names")
    free, profiled = tuple(c["serving_free"]), tuple(c["serving_profiled"])
    try:
        val.FitSettings(free=free, learning_rate=rate)
    except SpecError as e:
        raise SpecError(str(e).replace("calibration.free", "calibration.serving_free", 1)) from None
    stray = [k for k in profiled if k not in free]
    if stray:
        raise SpecError(
            f"calibration.serving_profiled = {stray[0]!r} is invalid: allowed the serving_free constants {', '.join(free)}"
        )
    return free, profiled, steps, float(rate)


def fit_settings(cfg: DictConfig) -> val.FitSettings:
    c = OmegaConf.to_container(cfg.calibration, resolve=True)
    unknown = sorted(set(c) - set(CALIBRATION_FIELDS))
    if unknown:
        raise SpecError(f"calibration.{unknown[0]} is not a known field: allowed {', '.join(CALIBRATION_FIELDS)}")
    free = c["free"]
    if not isinstance(free, list) or not all(isinstance(x, str) for x in free):
        raise SpecError(f"calibration.free = {free!r} is invalid: must be a list of Accounting constant names")
    return val.FitSettings(free=tuple(free), per_family=c["per_family"], steps=c["steps"], learning_rate=c["learning_rate"])


def check_fixed_costs_once(key: str, free, name: str, acc) -> None:
    """Refuse a per-layer latency fitted on top of a preset whose kernels already pay their fixed
    costs (``tau_*``): it would charge them twice (the previous release's global fit is
    ``accounting=layered``, without kernel terms)."""
    if "layer_latency" in free and any(float(getattr(acc, "tau_" + c)) != 0.0 for c in KERNEL_CLASSES):
        raise SpecError(
            f"{key} = [{', '.join(free)}] is invalid with accounting={name}: its kernels already pay their fixed costs "
            "(tau_*), so a per-layer latency would count them twice; fit layer_latency from accounting=layered"
        )


def fit_record(res: val.FitResult, points, prov: dict, wrote: Path | None) -> dict:
    ids = [p.measurement.id for p in points]
    finite = lambda v: float(v) if math.isfinite(v) else None
    return {
        "constants": res.constants,
        "unconstrained": res.unconstrained,
        "jacobian_singular_values": prov["jacobian_singular_values"],
        **{k: v for k, v in prov.items() if k.endswith("abs_log_ratio")},
        "n_points": prov["n_points"],
        "in_sample": {i: finite(v) for i, v in zip(ids, res.in_sample)},
        "loo": {i: finite(v) for i, v in zip(ids, res.loo)},
        "wrote": str(wrote) if wrote else None,
    }


def fit_report(res: val.FitResult, points) -> str:
    lines = ["", f"fit ({'per hardware family' if res.settings.per_family else 'global'}), loss {res.loss:.4g}:"]
    for fam, consts in res.constants.items():
        lines.append(f"  {fam}: " + ", ".join(f"{k} = {v:.4g}" for k, v in consts.items()))
    if res.unconstrained:
        lines.append(f"  unconstrained by these points (left at their start): {', '.join(res.unconstrained)}")
    lines.append("  singular values of d log(predicted) / d coordinates: " + ", ".join(f"{s:.3g}" for s in res.singular_values))
    body = [
        [p.measurement.id, f"{p.measurement.value:.4g}", f"{a:.4g}", f"{b:.4g}", "" if u else "not in the fit (infeasible)"]
        for p, a, b, u in zip(points, res.in_sample, res.loo, res.used)
    ]
    return "\n".join(lines + ["", val.text_table(["id", "measured", "in-sample", "leave-one-out", "note"], body)])


MEASUREMENTS = "moejax/data/reference/serving/measurements.yaml"  # the published points (the only ROCm measurements)


def rocm_factor(acc) -> stack_fit.StackFit | None:
    """The ROCm stack factor fitted on the ROCm points of ``MEASUREMENTS`` at ``acc`` (``stack_fit``)."""
    points, _, _ = val.resolve_all(val.load_measurements(repo_path(MEASUREMENTS)))
    return stack_fit.fit(points, acc)


def serving_job(cfg: DictConfig, path: Path, name: str, acc, out: Path, write: Path | None) -> str:
    """The serving-benchmark validation of a silicon CSV (module docstring)."""
    settings = serving_settings(cfg) if cfg.fit else None
    if settings is not None:
        check_fixed_costs_once("calibration.serving_free", settings[0], name, acc)
    rows = silicon.load_silicon(path, set(available("model")))
    cases, not_expressible = benchmarks.resolve_all(rows)
    if not cases:
        raise SpecError(f"measurements = {str(path)!r} is invalid: no row is expressible ({len(rows)} rows)")
    pred = benchmarks.predict(cases, benchmarks.row_accounting(name, cases))
    log_ratio = benchmarks.residuals(cases, pred)
    table = benchmarks.group_table(cases, log_ratio)
    itable = intervals.load(name)
    bands = intervals.apply(itable, [c.row.backend for c in cases], [c.row.hardware for c in cases], pred)
    rec = serving_report.record(len(rows), cases, pred, log_ratio, table, not_expressible)
    for j, c in enumerate(cases):
        rec["predicted"][c.row.id].update(intervals.entry(bands, j))
    text = serving_report.report(f"serving validation of {path} at accounting={name}", table, not_expressible)
    text += "\n" + serving_report.interval_report(cases, itable)
    if settings is not None:
        free, profiled, steps, rate = settings
        res = serving_fit.fit_serving(cases, acc, free, profiled, steps=steps, learning_rate=rate)
        cv = serving_report.cv_table(cases, res.cv, res.in_sample)
        stats = {
            f"{t['fold']}: {t['value']}": {k: t[k] for k in ("n", "tpot_median", "tpot_p90", "ttft_median", "ttft_p90")}
            for t in cv
            if t["group"] == "all"
        }
        itable, coverage = serving_report.interval_fit(cases, res.cv, str(cfg.measurements))
        base = yaml.safe_load((CONF_DIR / "accounting" / f"{name}.yaml").read_text())
        rocm = rocm_factor(replace(acc, **res.constants))
        if rocm is not None:
            base["rocm_factor"] = {"value": rocm.factor, "source": stack_fit.source(rocm, MEASUREMENTS)}
            text += f"\nROCm stack factor {rocm.factor:.4g} (from the ROCm points of {MEASUREMENTS})"
        write = write_text(
            write or out / "realistic.yaml",
            serving_fit.accounting_yaml(res, base, str(cfg.measurements), stats, itable),
            "calibration.write" if write else "out",
        )
        rec["fit"] = {"constants": res.constants, "cv": cv, "coverage": coverage, "wrote": str(write)}
        text += "\n" + serving_report.cv_report(res, cases) + "\n" + serving_report.coverage_report(coverage)
        text += f"\nwrote {write}"
    paths = serving_report.write_outputs(out, cases, pred | bands, log_ratio, rec)
    return "\n".join([text, *(f"wrote {p}" for p in paths), json.dumps(rec, default=str)])


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="validate")
def main(cfg: DictConfig) -> None:
    def job(run_dir: Path) -> str:
        jax.config.update("jax_enable_x64", True)
        name = HydraConfig.get().runtime.choices.get("accounting") or "realistic"
        acc = load_accounting(name)
        if not isinstance(cfg.strict, bool) or not isinstance(cfg.fit, bool):
            bad = "strict" if not isinstance(cfg.strict, bool) else "fit"
            raise SpecError(f"{bad} = {cfg[bad]!r} is invalid: must be true or false")
        settings = fit_settings(cfg) if cfg.fit else None
        written = path_value("calibration.write", cfg.calibration.write) if cfg.fit else None
        write = repo_path(written) if written else None
        if settings is not None and settings.per_family and write:
            raise SpecError(
                "calibration.write is invalid with calibration.per_family = true: conf/accounting/*.yaml holds one value "
                "per field"
            )
        path = repo_path(path_value("measurements", cfg.measurements) or "")
        out = path_value("out", cfg.out) or run_dir
        check_writable("out", out)  # before computing
        if write:
            check_writable("calibration.write", write.parent, shown=write)
        with whole_outputs("out", out):  # CSV, JSON and YAML whole or not at all; a full disk is one line
            return validate_job(cfg, path, name, acc, out, write, settings)

    run_command(job, cfg.get("compilation_cache"))


def validate_job(cfg, path: Path, name: str, acc, out: Path, write: Path | None, settings) -> str:
    """``validate`` on ``path`` (a measurement YAML, or AIConfigurator's silicon CSV: ``serving_job``)
    at accounting ``name``; outputs in ``out``; the report text (with the JSON line)."""
    if silicon.is_silicon_csv(path):
        return serving_job(cfg, path, name, acc, out, write)
    if settings is not None:
        check_fixed_costs_once("calibration.free", settings.free, name, acc)
    entries = val.load_measurements(path)
    points, not_expressible, skipped = val.resolve_all(entries, cfg.strict)
    ev = val.evaluate(points, acc)
    index, cases = benchmarks.measurement_cases(points, ev.variant)
    served = benchmarks.predict(cases, acc) if cases else {"ttft": [], "feasible": []}
    ttft = {points[i].measurement.id: float(t) if ok else None for i, t, ok in zip(index, served["ttft"], served["feasible"])}
    record = val.summary(len(entries), ev, not_expressible, skipped, ttft)
    text = val.report(f"validation of {path} at accounting={name}", ev, not_expressible, skipped, ttft)
    itable = intervals.load(name)
    fields, (inside, n_in) = intervals.for_points(itable, ev)
    for i, e in fields.items():
        record["predicted"][i].update(e)
    if itable is not None:
        record["interval_coverage"] = {"inside": inside, "n": n_in}
        text += (
            f"\n\n80 % intervals (accounting {name}'s table, engine not named; tpot_lo/hi, ttft_lo/hi in the JSON line):"
            f" the measured figure lies inside for {inside} of {n_in} feasible points"
        )
    pinned = float(acc.rocm_factor) != 1.0 and path == repo_path(MEASUREMENTS)  # the file the factor was fitted on
    rocm = stack_fit.fit(points, acc) if pinned else None
    if rocm is not None:  # their out-of-sample prediction leaves each out
        record["rocm_loo"] = {i: {"rocm_factor": rocm.loo[i], "predicted": rocm.loo_predicted[i]} for i in rocm.loo}
        text += "\n\nROCm points, the stack factor fitted without the point (leave one out): " + ", ".join(
            f"{i} x{rocm.loo[i]:.3f}: {rocm.loo_predicted[i]:.4g}" for i in rocm.loo
        )
    if settings is not None:
        res = val.fit(points, acc, settings)
        prov = val.provenance(res, points, str(cfg.measurements))
        if not settings.per_family:
            base = yaml.safe_load((CONF_DIR / "accounting" / f"{name}.yaml").read_text())
            # a global fit: layered's kind
            write = val.write_accounting(write or out / "layered.yaml", res, base, prov, "calibration.write" if write else "out")
        record["fit"] = fit_record(res, points, prov, write)
        text += "\n" + fit_report(res, points) + (f"\nwrote {write}" if write else "")
    paths = val.write_outputs(out, ev, record)
    return "\n".join([text, *(f"wrote {p}" for p in paths), json.dumps(record)])


if __name__ == "__main__":
    main()
