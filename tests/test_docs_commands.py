"""Every command the README and docs/*.md show is accounted for: run here (and its printed numbers
compared with the ones the docs quote), run by a named test (same command and code path, on a smaller
input where the test says so), run by .ci/run (the setup and test commands), or listed with the reason
it is too expensive or needs a cluster (those cases skip with that reason; MOEJAX_DOCS_EXPENSIVE=1
runs the runnable ones as written).

Commands are read from the README's ```bash blocks and its inline `python ...` spans, and from the
```bash blocks of docs/*.md: a comment line is dropped, a trailing ``# comment`` is dropped, ``\\``
continues a line, and ``a && b`` is two commands. A command the table below does not list fails
``test_every_documented_command_is_listed``: add it to COMMANDS when you document it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class Doc:
    """How a documented command is checked: ``run`` here as written; ``by`` a test or fixture
    (``tests/file.py::name``) that runs the same command on the same code path (``via``: the text in
    that file that shows how, where it is not ``python -m <module>``); ``ci`` a line of .ci/run that
    runs it; or ``expensive`` with the reason it is not run in the suite."""

    run: bool = False
    by: str = ""
    via: str = ""
    ci: str = ""
    expensive: str = ""


# the sweep's own function, called with the composed config (the command minus Hydra's argv parsing)
IN_PROCESS = "from moejax.engine.run import run"
FRONTIER_COST = (
    "the full frontier grid: 2.3e9 evaluations, 47 s on 2 idle cores (README) and minutes on a loaded "
    "one; even one point of it compiles the frontier kernel (~45 s)"
)
COMMANDS: dict[str, Doc] = {
    # README: set up and test (what .ci/run does), the main job, the point example
    "python3 -m venv .venv": Doc(ci="python3 -m venv .venv"),
    ". .venv/bin/activate": Doc(ci=". .venv/bin/activate"),
    "pip install -e '.[test]'": Doc(ci="python -m pip install -q -e '.[test]'"),
    "python -m pytest -q -n auto --dist loadfile": Doc(ci="python -m pytest -q -n auto --dist loadfile"),
    "python -m moejax.sweep +grid=frontier": Doc(
        expensive=FRONTIER_COST + "; its code path (batch search, frontier, economics) is run by "
        "tests/test_frontier.py and tests/test_serving_sweep.py on small grids, and the installed wheel runs the "
        "point example from an empty directory in .ci/run",
        by="tests/test_frontier.py::test_sweep_dataset_holds_the_frontier_with_reasons",
        via=IN_PROCESS,
    ),
    "python -m moejax.point model=deepseek-v3 hardware=h200 num_gpus=8 context=8192 launch=sglang": Doc(run=True),
    "python -m moejax.point": Doc(by="tests/test_docs_commands.py::test_readme_point_example"),  # the prose's name for it
    "python -m moejax.report outputs/<date>/<time>/sweep.nc": Doc(by="tests/test_report.py::test_page_is_self_contained"),
    "python -m moejax.validate": Doc(
        by="tests/test_validate.py::test_cli_small_file",
        expensive="the vendored measurement file (30 published points, ~15 s); the named test runs the same command "
        "on tests/data/validate-small.yaml and test_vendored_files_load reads the default file",
    ),
    # docs/guide.md
    "python -m moejax.sweep +grid=quick grid.models=[deepseek-v3] grid.hardware=[h200] grid.num_gpus=[16] "
    "grid.contexts=[32768] out=one.nc": Doc(by="tests/test_breakeven.py::test_sweep_can_include_kappa_star"),
    "python -m moejax.sweep +grid=quick breakeven.include=true out=q.nc": Doc(
        by="tests/test_breakeven.py::test_sweep_can_include_kappa_star"
    ),
    "python -m moejax.plot q.nc": Doc(by="tests/test_plot.py::test_cli_writes_every_figure"),
    "python -m moejax.fit mode=components": Doc(by="tests/test_epoch.py::test_cli_components"),  # a = 7/16, b = 5/8
    "python -m moejax.fit mode=latency": Doc(
        by="tests/test_epoch.py::test_cli_latency_writes_the_dataset"
    ),  # run as shown (out= a temp file)
    "python -m moejax.sweep +grid=quick sensitivities=true out=s.nc": Doc(
        by="tests/test_sensitivities.py::test_sweep_table3_columns"
    ),
    "python -m moejax.sweep +grid=quick hardware=b200 out=b200.nc": Doc(
        by="tests/test_sweep.py::test_multirun_over_catalogue_hardware"
    ),
    # docs/results.md
    "python sweeps/run.py qs-paper": Doc(by="tests/test_studies.py::test_qs_paper_study"),
    "python sweeps/run.py epoch": Doc(by="tests/test_studies.py::test_epoch_study"),
    "python -m moejax.calibrate": Doc(by="tests/test_calibrate.py::test_cli_writes_table_netcdf_and_one_json_line"),
    "python -m moejax.plot outputs/<date>/<time>/sweep.nc --out plots/": Doc(
        by="tests/test_plot.py::test_cli_writes_every_figure"
    ),
    "python -m moejax.validate accounting=sol": Doc(by="tests/test_validate.py::test_cli_small_file"),
    "python -m moejax.validate measurements=/path/mine.yaml out=dir/": Doc(by="tests/test_validate.py::test_cli_small_file"),
    "python -m moejax.validate accounting=layered fit=true": Doc(
        by="tests/test_validate.py::test_fit_cli_writes_accounting_yaml",
        expensive="1000 Adam steps with leave-one-out over the vendored file; the named test fits a synthetic file "
        "(12 points whose constants it recovers to 1e-3)",
    ),
    "python sweeps/run.py serving": Doc(
        expensive="sol, realistic and layered validation over the vendored file and a refit of the layered "
        "constants (a study, not a check; about a minute); its pieces are the validate commands above"
    ),
    "python -m moejax.validate measurements=moejax/data/reference/serving/aic-silicon/train.csv": Doc(
        by="tests/test_silicon.py::test_cli_on_a_silicon_csv",
        expensive="2,145 measured runs (1 MB CSV); the named test runs the same command on a small silicon CSV",
    ),
    "python sweeps/run.py silicon": Doc(
        expensive="grouped cross-validated fits over 2,145 measured runs (a study, many minutes); its pieces are "
        "the silicon validate command above"
    ),
    # docs/sweeps.md
    "python -m moejax.sweep +grid=quick": Doc(by="tests/test_sweep.py::test_quick_grid_writes_a_labelled_dataset"),
    "python -m moejax.sweep +grid=qs-paper": Doc(
        by="tests/test_studies.py::test_qs_paper_study", via="moejax.sweep +grid=qs-paper"
    ),  # the study runs it
    "python -m moejax.sweep +grid=frontier grid.contexts=[8192,131072] grid.accounting.overlap=0.5 out=my.nc": Doc(
        expensive=FRONTIER_COST, by="tests/test_docs_commands.py::test_sweep_accounting_override", via=IN_PROCESS
    ),
    "python -m moejax.sweep -m +grid=quick hardware=h100-sxm,b200": Doc(
        by="tests/test_sweep.py::test_multirun_over_catalogue_hardware"
    ),
    "python -m moejax.sweep +grid=quick keep_partitions=true": Doc(
        by="tests/test_sweep.py::test_winner_is_the_best_of_all_kept_candidates"
    ),
    "python -m moejax.sweep +grid=quick '+grid.batches=[1,4,16,64,256,1024]' '+grid.slo={tpot_max: 0.05}'": Doc(
        by="tests/test_frontier.py::test_sweep_dataset_holds_the_frontier_with_reasons", via=IN_PROCESS
    ),
    "python -m moejax.breakeven +grid=quick": Doc(by="tests/test_breakeven.py::test_kappa_star_brackets_the_crossing"),
    "python -m moejax.sweep +grid=frontier breakeven.include=true sensitivities=true": Doc(
        expensive=FRONTIER_COST + ", plus κ* and the elasticities at every point", by="tests/test_plot.py::dataset"
    ),
    "python -m moejax.breakeven +grid=quick 'grid.batches=[1,4,16,64,256]'": Doc(
        by="tests/test_frontier_breakeven.py::test_command_writes_the_frontier_variables"
    ),
    "MOEJAX_COORDINATOR=host0:1234 MOEJAX_NUM_PROCESSES=4 MOEJAX_PROCESS_ID=$RANK python -m moejax.sweep "
    "+grid=design-space distributed=env out=/shared/ds.nc": Doc(
        by="tests/test_scale.py::test_two_processes_match_one",
        expensive="four hosts; the named test runs distributed=env with two local processes on a small grid",
    ),
    "srun -N 4 python -m moejax.sweep +grid=design-space distributed=slurm out=/shared/ds.nc": Doc(
        expensive="needs a SLURM cluster; distributed=slurm reads the same coordinator settings from SLURM's "
        "variables (engine/distributed.py)",
        by="tests/test_scale.py::test_misconfigured_cluster_fails_fast",
    ),
}


def _commands_in(text: str, inline: bool) -> list[str]:
    """The commands of ``text``'s shell blocks (and, with ``inline``, its inline ``python ...`` spans)."""
    found = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang not in SHELLS:
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                found += [" ".join(c.split()) for c in line.split(" && ")]
    if inline:
        prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        found += [" ".join(c.split()) for c in re.findall(r"`(python3? [^`]+)`", prose)]
    return found


def documented() -> dict[str, list[str]]:
    """Command -> the files that show it."""
    out: dict[str, list[str]] = {}
    for path in DOCS:
        for command in _commands_in(path.read_text(), inline=path.name == "README.md"):
            out.setdefault(command, [])
            if path.name not in out[command]:
                out[command].append(path.name)
    return out


def test_every_documented_command_is_listed():
    shown = documented()
    unlisted = sorted(c for c in shown if c not in COMMANDS)
    assert not unlisted, "documented commands no test accounts for (add them to COMMANDS): " + "; ".join(
        f"{c!r} ({', '.join(shown[c])})" for c in unlisted
    )
    stale = sorted(c for c in COMMANDS if c not in shown)
    assert not stale, f"COMMANDS lists commands no document shows any more: {stale}"
    for command, doc in COMMANDS.items():
        assert doc.run or doc.by or doc.ci or doc.expensive, command


def _override_keys(command: str) -> list[str]:
    """The config keys a command sets (``+grid.slo={...}`` -> ``grid.slo``), and Hydra's ``-m``."""
    keys = []
    argv = shlex.split(command.replace("$RANK", "0"))
    for token in argv[argv.index(next(a for a in argv if a.startswith("moejax.") or a.endswith(".py"))) + 1 :]:
        if token == "-m":
            keys.append('"-m"')
        key, eq, _ = token.lstrip("+~").partition("=")
        if eq and not key.isupper() and key not in ("out",):
            keys.append(key)
    return keys


@pytest.mark.parametrize("command", sorted(c for c, d in COMMANDS.items() if d.by))
def test_named_test_runs_the_command(command):
    """The named test exists, and its file runs the same entry point with every config key the
    documented command sets (the values may be smaller)."""
    by = COMMANDS[command].by
    file, _, name = by.partition("::")
    source = (ROOT / file).read_text()
    assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{by} does not exist"
    entry = re.search(r"-m (moejax\.\w+)|python (sweeps/run\.py) (\S+)", command)
    if COMMANDS[command].via:
        assert COMMANDS[command].via in source, f"{file} does not show {COMMANDS[command].via!r}"
    elif entry and entry.group(1):
        assert entry.group(1) in source, f"{file} does not run {entry.group(1)}"
    elif entry:
        assert f'"{entry.group(3)}"' in source, f"{file} does not run the {entry.group(3)} study"
    missing = [k for k in _override_keys(command) if k not in source]
    assert not missing, f"{file} never sets {missing} of {command!r}"


@pytest.mark.parametrize("command", sorted(c for c, d in COMMANDS.items() if d.ci))
def test_ci_runs_the_setup_and_test_commands(command):
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert COMMANDS[command].ci in [line.strip() for line in ci], f".ci/run does not run {COMMANDS[command].ci!r}"


@pytest.mark.parametrize("command", sorted(c for c, d in COMMANDS.items() if d.expensive))
def test_expensive_commands(command, tmp_path):
    """Listed with the reason they are not run in the suite; MOEJAX_DOCS_EXPENSIVE=1 runs the ones a
    single machine can (no placeholders, no cluster) as written, in an empty directory."""
    doc = COMMANDS[command]
    runnable = not re.search(r"<|\$|/shared/|/path/|^srun |sweeps/run\.py", command)
    if os.environ.get("MOEJAX_DOCS_EXPENSIVE") != "1" or not runnable:
        pytest.skip(f"not run in the suite: {doc.expensive}")
    proc = _run(command, tmp_path, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run(command: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``command`` (``python -m moejax...``) as written, from ``cwd`` with this checkout's moejax."""
    argv = shlex.split(command)
    assert argv[0] in ("python", "python3"), command
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _after(text: str, anchor: str, lang: str) -> str:
    """The body of the first ```lang block after ``anchor`` in ``text``."""
    return re.search(rf"^```{lang}\n(.*?)^```", text[text.index(anchor) :], re.S | re.M).group(1)


def test_readme_point_example(tmp_path):
    """The README's ``moejax.point`` example, run as written: the best partition, batch and
    tokens/s per GPU its prose quotes, and the launch lines it shows, are what the command prints."""
    readme = (ROOT / "README.md").read_text()
    command = next(c for c, d in COMMANDS.items() if d.run and "moejax.point" in c)
    assert command in documented()
    proc = _run(command, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    quoted = re.search(
        r"best: `(?P<partition>[^`]+)`, batch (?P<batch>\d+), (?P<tput>[\d.]+) tokens/s per GPU,\s+"
        r"(?P<bound>[\w-]+)-bound",
        readme,
    )
    assert quoted, "the README no longer quotes the point example's best partition, batch and tokens/s per GPU"
    best = re.search(
        r"^best: (?P<partition>.+?)  batch (?P<batch>\d+) per replica.*bound: (?P<bound>\w+)\n"
        r"\s+(?P<tput>[\d.]+)(?: \(80 %: [^)]*\))? tokens/s per GPU",  # the central value, then its interval
        out,
        re.M,
    )
    assert best, out[:2000]
    for field in ("partition", "batch", "tput"):
        assert best[field] == quoted[field], (field, best[field], quoted[field])
    assert best["bound"].lower() == quoted["bound"].lower().removesuffix("-bound")
    shown = _after(readme, command, "text").strip().splitlines()
    assert shown and out.rstrip().splitlines()[-len(shown) :] == shown, out[-2000:]


def test_sweep_accounting_override():
    """docs/sweeps.md's ``+grid=frontier grid.contexts=[...] grid.accounting.overlap=0.5``: the
    overrides reach the plan (the frontier grid itself is too expensive to run here; the sweep's
    path on a small grid is tests/test_frontier.py's, run in process as below)."""
    from hydra import compose, initialize_config_dir

    from moejax.catalogue import CONF_DIR, load_accounting
    from moejax.engine.plan import grid_accounting
    from moejax.schema import register, sweep_config

    command = next(c for c in COMMANDS if "grid.accounting.overlap=0.5" in c)
    overrides = [a for a in shlex.split(command)[3:] if not a.startswith("out=")]
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = sweep_config(compose("config", overrides=overrides))
    assert list(cfg.grid.contexts) == [8192, 131072] and cfg.grid.name == "frontier"
    acc, preset = grid_accounting(cfg.grid.accounting), load_accounting(cfg.grid.accounting.mode)
    changed = {f.name for f in dataclasses.fields(acc) if getattr(acc, f.name) != getattr(preset, f.name)}
    assert acc.overlap == 0.5 and changed == {"overlap"}, changed
