"""Kernel-level calibration: measured kernel times (``moejax/data/reference/kernels``), their bytes and FLOPs
(``shapes``), the per-kernel fit with grouped cross-validation (``fit``) and its outputs (``report``:
``conf/calibration/kernel_constants.yaml`` and ``sweeps/kernels/RESIDUALS.md``, by ``python -m moejax.analysis.kernels``)."""
