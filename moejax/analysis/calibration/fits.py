"""One fit of a calibration problem (``Fit``: which targets, which constants free, the static
accounting choices), the optimiser settings, and a fit from its config mapping."""

from __future__ import annotations

import dataclasses
import fnmatch

from ...physics.specs import SpecError
from .targets import QUANTITIES, Target


@dataclasses.dataclass(frozen=True)
class Fit:
    """One fit of a calibration problem.

    Targets: those of ``quantities`` in ``tables`` (and, if ``include`` is given, whose id matches
    one of its glob patterns). ``exclude`` maps id globs to the reason they are reported but not
    fitted. ``free`` constants are optimised; ``probe`` constants are held at their value and only
    enter the identifiability analysis; ``fixed`` sets held values (others: ``Accounting``
    defaults, or the fitted values of the fit named by ``inherit``). ``partition`` is ``"paper"``
    (the reference's stated partition per GPU count; dense baselines with ep = 1) or ``"search"``
    (best feasible partition by throughput per GPU over ``search_space``, as ``moejax.engine.grid``).
    ``init`` gives start values of free constants.
    """

    name: str
    quantities: tuple[str, ...] = QUANTITIES
    tables: tuple[int, ...] = ()
    include: tuple[str, ...] = ()
    exclude: dict = dataclasses.field(default_factory=dict)
    free: tuple[str, ...] = ()
    probe: tuple[str, ...] = ()
    fixed: dict = dataclasses.field(default_factory=dict)
    init: dict = dataclasses.field(default_factory=dict)
    inherit: str | None = None
    expert_traffic: str = "physical"
    roofline: str = "phase"
    partition: str = "paper"
    search_space: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def selects(self, t: Target) -> bool:
        if t.quantity not in self.quantities or (self.tables and t.table not in self.tables):
            return False
        return not self.include or any(fnmatch.fnmatchcase(t.id, pat) for pat in self.include)

    def exclusion(self, t: Target) -> str | None:
        return next((why for pat, why in self.exclude.items() if fnmatch.fnmatchcase(t.id, pat)), None)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Adam for ``adam_steps`` at ``learning_rate`` (in theta units), then up to ``lbfgs_steps``
    of L-BFGS; the best iterate is kept."""

    adam_steps: int = 300
    learning_rate: float = 0.05
    lbfgs_steps: int = 100


def fit_from_config(name: str, cfg: dict) -> Fit:
    """A ``Fit`` from a plain mapping (the ``fits.<name>`` node of ``conf/calibrate.yaml``)."""
    known = {f.name for f in dataclasses.fields(Fit)} - {"name"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise SpecError(f"fits.{name}.{unknown[0]} is not a known field: allowed {', '.join(sorted(known))}")
    out = {}
    for k, v in cfg.items():
        if k in ("quantities", "include", "free", "probe", "tables"):
            if not isinstance(v, list | tuple):
                raise SpecError(f"fits.{name}.{k} = {v!r} is invalid: must be a list")
            v = tuple(v) if k == "tables" else tuple(str(x) for x in v)
            if k == "tables" and any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                raise SpecError(f"fits.{name}.tables = {list(v)!r} is invalid: must be table numbers")
        elif k in ("exclude", "fixed", "init", "search_space"):
            if not isinstance(v, dict | type(None)):
                raise SpecError(f"fits.{name}.{k} = {v!r} is invalid: must be a mapping")
            v = dict(v or {})
        elif k in ("expert_traffic", "roofline", "partition", "description") or (k == "inherit" and v is not None):
            v = str(v)
        out[k] = v
    return Fit(name=name, **out)
