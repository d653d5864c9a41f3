"""Calibration of the cost model's named accounting constants against published numbers.

A *calibration problem* is a table of published targets (``Target``: a number printed in a paper,
with its table, row and column) and a model of every target as a function of named free constants:
the array leaves of ``moejax.Accounting`` (``CONSTANTS``) plus ``weight_scale``, a multiplier on
resident weight bytes in the memory check that ``Accounting`` does not have (see below). Which
constants are free, which are only probed for identifiability, and the static accounting choices
(``expert_traffic`` "physical"/"paper-active"/"paper-pool", ``roofline`` "phase"/"global", the partition: the paper's
stated one or moejax's best-partition search) make one ``Fit``; a problem is a sequence of fits,
each able to inherit the fitted constants of an earlier one.

How a target is modelled (SI units inside, the paper's units outside):

- ``b_max``: admissible batch B in sequences at the point's partition, eq. 20
  ``B = dp_attn * floor((hbm_bytes*hbm_usable_fraction - reserve_bytes - weight_scale*W_gpu)
  / S_gpu)``, ``W_gpu`` resident weight bytes per GPU and ``S_gpu`` KV bytes per sequence per
  GPU (with ``kv_scale``), both from ``moejax.physics.cost``; with ``weight_scale = 1`` it is exactly
  ``moejax.physics.cost.batch_capacity``. A printed OOM is the bound B < 1.
- ``relative_throughput``: ``100 * tokens/s per GPU / (the normaliser point's)`` (percent), each
  point served at its own B_max by ``moejax.decode_point`` (the same GPU count, so per GPU or per
  cluster makes no difference).
- ``relative_time``: per-token cost of one component (``hbm``, ``compute`` or ``comm`` = exposed
  communication), GPU-seconds per generated token ``t_component * gpus_per_replica / B``, over
  the normaliser point's per-token compute.
- ``b_max`` is for the whole cluster: ``dp`` replicas times a replica's B_max (``dp = 1`` at the
  paper's partitions; the partition search may use replicas).

Constants are optimised in an unconstrained parametrisation (``CONSTANTS[name].transform``: logit
for fractions, log for positive scales, softplus with a unit for non-negative additive terms) by
optax (Adam, then L-BFGS). B_max is continuous during the fit (``Accounting(integer_batch=False)``)
so the loss has gradients; every reported prediction comes from the exact, integer-batch model.

The loss is the mean squared *log-distance* between prediction and the interval the printed
number stands for: a B is a floor (``[B, B+1)``), any other value is rounded at its printed
precision (214 -> [213.5, 214.5], 0.7 -> [0.65, 0.75]; a printed 0 -> below 0.5), each shrunk by
1% of its width so an accepted prediction prints unambiguously. It is zero only if every fitted
number is reproduced as printed; far from the interval it is the log-ratio predicted/published.
The residual table reports the plain relative residual predicted/published - 1.

Identifiability: ``J[i, j] = d log(prediction_i) / d theta_j`` over the fitted targets at the
optimum, theta being the transformed coordinate of each free or probed constant (a constant held
on the boundary of its transform, such as ``reserve_bytes = 0``, is differentiated in its unit
instead). Its singular values are reported, and every minimal set of constants whose
(unit-normalised) columns are linearly dependent, to ``rtol``, is named as an unidentifiable
combination: one direction in it changes no fitted prediction.

Modules, each importing only those before it: ``constants`` (the named constants and their
parametrisation), ``targets`` (published numbers and reference files), ``fits`` (one fit's
definition and its config), ``model`` (the model of every target and the residuals), ``solve``
(running fits, identifiability, a whole problem) and ``outputs`` (report, dataset, files).

Worked example (tested): the qs paper's DeepSeek-V3 batches on 64 GPUs at its stated partition
TP8 x KVP8 (Table 4). moejax's physical default (all 180 GB usable, KV as stored) admits 18,671
MoE and 19,687 dense sequences at 1k context where the paper prints 31,349 and 34,263; fitting
``hbm_usable_fraction`` and ``kv_scale`` to the six B values at 1k-32k reproduces all six exactly:

>>> import jax; jax.config.update("jax_enable_x64", True)
>>> from moejax.analysis.calibration import Fit, calibrate, load_reference
>>> ref = load_reference("sweeps/qs-paper/reference.yaml")
>>> fit = Fit("capacity", quantities=("b_max",), tables=(4,), free=("hbm_usable_fraction", "kv_scale"),
...           include=("t4.b.*.1k", "t4.b.*.16k", "t4.b.*.32k"))
>>> res = calibrate(ref, [fit])
>>> [int(v) for v in res.table["physical_default"][:2]], [int(v) for v in res.table["calibrated"][:2]]
([18671, 19687], [31349, 34263])
>>> bool(res.table["reproduced"].all()), res.fits[0].loss
(True, 0.0)
"""

from __future__ import annotations

from .constants import (
    ACCOUNTING_CONSTANTS,
    BOUND_TOL,
    CONSTANTS,
    DEFAULTS,
    NONNEGATIVE,
    POSITIVE,
    UNIT,
    Constant,
    check_constants,
    coordinate_name,
    snap,
    theta_derivative,
    to_theta,
    to_value,
)
from .fits import Fit, Optimizer, fit_from_config
from .model import TINY, batch_capacity, interval_residual, log_residual, predict, reproduced
from .outputs import SHORT_NOTES, dataset, report, summary_json, write_outputs
from .solve import RESIDUAL_FIELDS, CalibrationResult, FitResult, calibrate, check_fit, circuits, run_fit
from .targets import (
    COMPONENTS,
    QUANTITIES,
    TARGET_FIELDS,
    Reference,
    Target,
    load_reference,
    parse_target,
    resolve_path,
)

__test__ = {"circuits": circuits}  # doctest.testmod(this package) runs the worked example and this one

__all__ = [
    "ACCOUNTING_CONSTANTS",
    "BOUND_TOL",
    "COMPONENTS",
    "CONSTANTS",
    "DEFAULTS",
    "NONNEGATIVE",
    "POSITIVE",
    "QUANTITIES",
    "RESIDUAL_FIELDS",
    "SHORT_NOTES",
    "TARGET_FIELDS",
    "TINY",
    "UNIT",
    "CalibrationResult",
    "Constant",
    "Fit",
    "FitResult",
    "Optimizer",
    "Reference",
    "Target",
    "batch_capacity",
    "calibrate",
    "check_constants",
    "check_fit",
    "circuits",
    "coordinate_name",
    "dataset",
    "fit_from_config",
    "interval_residual",
    "load_reference",
    "log_residual",
    "parse_target",
    "predict",
    "report",
    "reproduced",
    "resolve_path",
    "run_fit",
    "snap",
    "summary_json",
    "theta_derivative",
    "to_theta",
    "to_value",
    "write_outputs",
]
