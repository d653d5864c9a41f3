"""First contact (issue 20, item 6): what a new user meets first fails early and in one line.

Unwritable output locations are refused before anything is computed: each command runs in-process
with its computing step replaced by one that fails the test, so a refusal that comes only after
computing (as validate, fit and calibrate did) fails here."""

from pathlib import Path

import pytest
from cli_runs import assert_one_line, run_main

UNWRITABLE = Path("/sys/moejax-test")  # sysfs: creating anything there fails, even as root
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x7b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[1024]",
    "grid.kappas=[5]",
    "grid.partitions.tp=[8]",
    "grid.partitions.ep=[8]",
    "grid.partitions.pp=[1]",
    "grid.partitions.dp_attn=[1]",
    "grid.partitions.kvp=[1]",
    "summary=false",
    "compilation_cache=null",
]


def _must_not_compute(*_, **__):
    raise AssertionError("computed before refusing the output location")


@pytest.mark.parametrize(
    "module,args,patch",
    [
        ("moejax.sweep", [*TINY, f"parts_dir={UNWRITABLE / 'parts'}"], "moejax.sweep.run"),
        ("moejax.validate", [f"out={UNWRITABLE / 'v'}"], "moejax.analysis.validation.evaluate"),
        (
            "moejax.validate",
            ["accounting=layered", "fit=true", f"calibration.write={UNWRITABLE / 'layered.yaml'}"],
            "moejax.analysis.validation.evaluate",
        ),
        ("moejax.calibrate", [f"out={UNWRITABLE / 'c'}"], "moejax.calibrate.calibrate"),
        ("moejax.fit", ["mode=latency", f"out={UNWRITABLE / 'fit.nc'}"], "moejax.analysis.epoch.latency_fits"),
    ],
    ids=["sweep-parts_dir", "validate-out", "validate-calibration.write", "calibrate-out", "fit-out"],
)
def test_unwritable_output_refused_before_computing(module, args, patch, tmp_path, monkeypatch):
    monkeypatch.setattr(patch, _must_not_compute)
    field = args[-1].partition("=")[0]
    if module == "moejax.sweep":
        args = [*args, f"out={tmp_path / 'x.nc'}"]
    code, _, err = run_main(module, args, hydra_dir=tmp_path / "run")
    assert_one_line(code, err, f"{field} = '{UNWRITABLE}", "cannot write there")
    assert not UNWRITABLE.exists() and not any(p.is_file() for p in tmp_path.rglob("*"))


def test_plot_unwritable_out_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("moejax.plot.make_plots", _must_not_compute)
    dataset = tmp_path / "sweep.nc"
    dataset.write_bytes(b"not read: the output is checked first")
    code, _, err = run_main("moejax.plot", [str(dataset), "--out", str(UNWRITABLE / "plots")])
    assert_one_line(code, err, f"out = '{UNWRITABLE / 'plots'}' is invalid: cannot write there")
    assert not UNWRITABLE.exists() and [p.name for p in tmp_path.iterdir()] == ["sweep.nc"]


def test_output_that_is_a_file_is_refused(tmp_path):
    """``check_writable`` on a path that is a file: the directory a command wants cannot be created."""
    from moejax.engine.dataset import check_writable
    from moejax.physics.specs import SpecError

    (tmp_path / "f").write_text("x")
    with pytest.raises(SpecError, match=r"^parts_dir = '.*/f' is invalid: '.*/f' is a file, not a directory$"):
        check_writable("parts_dir", tmp_path / "f")
    check_writable("out", tmp_path / "new" / "deeper")  # writable: passes, and leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_concurrent_writability_checks_do_not_fail_each_other(tmp_path):
    """The processes of a multi-process run check the same new ``parts_dir`` at once; one's probe
    clean-up (removing the directories it created) must not fail another's check (it did: "cannot
    write there (No such file or directory)" in 124 of 200 rounds of 4 threads)."""
    import threading

    from moejax.engine.dataset import check_writable
    from moejax.physics.specs import SpecError

    errors = []

    def check(directory):
        try:
            check_writable("parts_dir", directory)
        except SpecError as e:
            errors.append(str(e))

    for i in range(100):
        threads = [threading.Thread(target=check, args=(tmp_path / f"run{i}" / "parts",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_long_runs_report_progress_off_a_terminal(tmp_path, monkeypatch):
    """Issue 20: a long sweep logged to a file (not a terminal) printed nothing for minutes. With
    ``progress=auto`` it now reports once past ``LOG_PROGRESS_S`` (30 s; 0 here, so this tiny
    multi-chunk run counts as long); a run shorter than the threshold stays silent."""
    import sys

    import moejax.engine.run  # noqa: F401 - the module (the package exports a function of the same name)

    run = sys.modules["moejax.engine.run"]

    args = [*TINY, "grid.contexts=[1024,2048,4096,8192]", "max_chunk_evaluations=2", "progress=auto"]
    monkeypatch.setattr(run, "LOG_PROGRESS_S", 1e6)  # a threshold no run reaches (the first one compiles: slow)
    code, _, err = run_main(
        "moejax.sweep", [*args, f"out={tmp_path / 'quiet.nc'}", f"parts_dir={tmp_path / 'p1'}"], hydra_dir=tmp_path / "run"
    )
    assert code == 0 and err.strip() == "", err[-2000:]  # short: silent, as before
    monkeypatch.setattr(run, "LOG_PROGRESS_S", 0.0)
    code, _, err = run_main(
        "moejax.sweep", [*args, f"out={tmp_path / 'long.nc'}", f"parts_dir={tmp_path / 'p2'}"], hydra_dir=tmp_path / "run"
    )
    assert code == 0, err[-2000:]
    assert "chunk" in err and "evaluations/s" in err and "Traceback" not in err, err[-2000:]
