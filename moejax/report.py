"""One self-contained HTML page from a sweep dataset: ``python -m moejax.report SWEEP.nc [--out report.html]``.

The page (``moejax.figures.report``) opens from disk with no server and no network: selectors for
model, hardware, GPUs and context (the accounting is the dataset's), the serving frontier with
$/Mtok and J/token on hover, κ* along the frontier and over context × GPUs, the bound map, the
sensitivities, predicted vs measured from ``python -m moejax.validate`` (``--validation``
``validation.csv`` or its directory) and the dataset's provenance. Panels whose variables the
dataset lacks are left out with a one-line note. Default output: ``report.html`` next to the
dataset. Bad input (a missing or unreadable file, a netCDF file that is not a moejax sweep, an
existing output without ``--overwrite``): one line ``error: ...`` on stderr, exit code 2, no file.
The page is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .analysis.summary import open_sweep
from .engine import interrupts
from .engine.dataset import write_text
from .figures.report import build_html, read_validation
from .physics.specs import SpecError


def _validation(path: Path | None):
    if path is None:
        return None
    csv = path / "validation.csv" if path.is_dir() else path
    try:
        return read_validation(csv)
    except (OSError, ValueError, KeyError) as e:
        raise SpecError(
            f"validation = {str(path)!r} is invalid: not a readable validation.csv of python -m moejax.validate "
            f"({type(e).__name__}: {e})"
        ) from None


def write_report(dataset: Path, out: Path, overwrite: bool = False, validation: Path | None = None) -> Path:
    """Write the page for ``dataset`` to ``out`` atomically; ``SpecError`` on bad input (nothing written)."""
    if not dataset.is_file():
        raise SpecError(f"dataset = {str(dataset)!r} is invalid: no such file")
    if out.is_dir():
        raise SpecError(f"out = {str(out)!r} is invalid: a directory; give a file path, e.g. {out / 'report.html'}")
    if out.exists() and not overwrite:
        raise SpecError(f"out = {str(out)!r} is invalid: the file exists; choose another path or pass --overwrite")
    if not out.parent.is_dir():
        raise SpecError(f"out = {str(out)!r} is invalid: no directory {str(out.parent)!r}")
    rows = _validation(validation)
    with open_sweep(dataset) as ds:
        page = build_html(ds.load(), dataset.name, rows)
    return write_text(out, page)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m moejax.report", description=__doc__.split("\n")[0])
    p.add_argument("dataset", type=Path, help="sweep dataset (netCDF), as written by python -m moejax.sweep")
    p.add_argument("--out", type=Path, default=None, help="output HTML file (default: report.html next to the dataset)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--validation",
        type=Path,
        default=None,
        help="validation.csv (or its directory) from python -m moejax.validate: predicted vs measured panel",
    )
    args = p.parse_args(argv)
    return interrupts.run_command(lambda: _report(args))


def _report(args) -> int:
    out = args.out or args.dataset.parent / "report.html"
    try:
        write_report(args.dataset, out, args.overwrite, args.validation)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
