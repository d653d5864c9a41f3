"""Study modules of ``sweeps/run.py`` (a script, not a package of the library): each ``run(run_dir)``
returns ``(exit code, markdown text)`` and may write machine-readable files into ``run_dir``."""

from __future__ import annotations

import math


def md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def md_table(header, rows, align: str | None = None) -> str:
    """A markdown table; ``align``: one character per column, ``l`` or ``r`` (default: all left)."""
    rule = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    return "\n".join([md_row(header), md_row(rule), *(md_row(r) for r in rows)])


def num(x, fmt: str = "{:.4g}") -> str:
    """A number for a table cell; "—" for None/NaN, "∞" for infinity."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return fmt.format(x)
