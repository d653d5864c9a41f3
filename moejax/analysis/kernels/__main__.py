"""``python -m moejax.analysis.kernels``: fit the per-kernel constants and write their residual tables (``report.main``)."""

import sys

from .report import main

sys.exit(main())
