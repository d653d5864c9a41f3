"""Scale-out for real: forced CPU devices, two JAX processes on 127.0.0.1 (gloo), failures. The
single-process yardsticks and the rerun that completes a dead process's chunks run the command in
this process (``cli_runs.run_main``); every multi-process run is its own processes."""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from cli_runs import run_main

ROOT = Path(__file__).resolve().parent.parent
GRID = ["+grid=quick", "max_chunk_evaluations=100000", "summary=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, tmp, pid=None, n=None, port=None, env=None, **kw):
    env = {**os.environ, **(env or {})}
    if pid is not None:
        env.update(MOEJAX_COORDINATOR=f"127.0.0.1:{port}", MOEJAX_NUM_PROCESSES=str(n), MOEJAX_PROCESS_ID=str(pid))
    return subprocess.Popen(
        [sys.executable, "-m", "moejax.sweep", *GRID, *args, f"hydra.run.dir={tmp}/run{pid}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run_here(args, tmp):
    """``start``'s command, one process, run in this one; its exit code is 0 (else stderr is shown)."""
    code, _, err = run_main("moejax.sweep", [*GRID, *args], hydra_dir=tmp / "run")
    assert code == 0, err[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    run_here([f"out={tmp / 'one.nc'}", f"parts_dir={tmp / 'parts'}"], tmp)
    return tmp / "one.nc"


def test_eight_local_devices_match_one(single, tmp_path):
    proc = start(
        [f"out={tmp_path / 'eight.nc'}", f"parts_dir={tmp_path / 'parts'}"],
        tmp_path,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    )
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    with xr.open_dataset(single) as a, xr.open_dataset(tmp_path / "eight.nc") as b:
        assert a.identical(b)  # bit for bit: each device runs the single-device executable on whole chunks


def test_two_processes_match_one(single, tmp_path):
    port = free_port()
    args = ["distributed=env", f"out={tmp_path / 'two.nc'}", f"parts_dir={tmp_path / 'parts'}"]
    procs = [start(args, tmp_path, pid, 2, port) for pid in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "process 1: parts written" in outs[1][0]
    with xr.open_dataset(single) as a, xr.open_dataset(tmp_path / "two.nc") as b:
        assert a.identical(b)


def test_a_dead_process_leaves_parts_and_a_rerun_completes(single, tmp_path):
    contexts = "[" + ",".join(str(1024 * (i + 1)) for i in range(16)) + "]"  # 8 chunks per process
    parts, port = tmp_path / "parts", free_port()
    args = [
        "distributed=env",
        "distributed.timeout_s=10",
        f"grid.contexts={contexts}",
        f"parts_dir={parts}",
        f"out={tmp_path / 'x.nc'}",
        "max_chunk_evaluations=1",
    ]
    procs = [start(args, tmp_path, pid, 2, port) for pid in (0, 1)]
    deadline = time.time() + 120
    while time.time() < deadline and not list(parts.glob("*/part-*1.nc")) + list(parts.glob("*/part-*3.nc")):
        time.sleep(0.01)
    procs[1].send_signal(signal.SIGKILL)  # process 1 dies after writing an odd chunk
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 2 and not (tmp_path / "x.nc").exists()
    assert_one_line(err, "error: distributed: process 1 of 2 stopped unexpectedly", "process 0 stops too")
    written = {int(p.stem.split("-")[1]) for p in parts.glob("*/part-*.nc")}
    # kept: at least the odd chunk process 1 wrote; not all (process 0 stops as soon as it learns of
    # the loss, so its own share may be unfinished: cold, it was still compiling when process 1 wrote)
    assert written & set(range(1, 16, 2)) and len(written) < 16
    run_here(args[2:], tmp_path)  # one process: completes only the missing chunks
    run_here(
        [
            f"grid.contexts={contexts}",
            "max_chunk_evaluations=1",
            f"out={tmp_path / 'clean.nc'}",
            f"parts_dir={tmp_path / 'other'}",
        ],
        tmp_path / "clean",
    )
    with xr.open_dataset(tmp_path / "x.nc") as a, xr.open_dataset(tmp_path / "clean.nc") as b:
        assert a.identical(b)


def assert_one_line(err: str, *parts: str) -> None:
    """``err`` (a process's stderr) ends in one moejax line holding ``parts``: no traceback, no C++
    stack from JAX's runtime (its abort when a peer goes), nothing after the line."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("moejax: process")]
    assert lines and all(p in lines[-1] for p in parts), err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err and "Terminating process" not in err, err[-3000:]


@pytest.mark.parametrize("how, victim", [("kill", 0), ("kill", 2), ("stop", 1), ("terminate", 1)])
def test_a_lost_peer_is_one_line_on_every_survivor(how, victim, tmp_path):
    """Three processes; one is killed (the coordinator, or another rank, which process 0 reports to
    the third), stopped (silent: found by its missing beats) or terminated (SIGTERM right after
    JAX's initialisation: its own line, exit 143; JAX's preemption service, on by default, swallowed
    it there and the run went on).
    Every survivor ends within seconds in one line naming the rank, exit 2, never the runtime's abort.
    48 one-context chunks: the run is still going when the signal lands after its first part."""
    contexts = "[" + ",".join(str(1024 * (i + 1)) for i in range(48)) + "]"
    parts, port = tmp_path / "parts", free_port()
    args = ["distributed=env", "distributed.timeout_s=10", f"grid.contexts={contexts}", "max_chunk_evaluations=1"]
    procs = [start([*args, f"parts_dir={parts}", f"out={tmp_path / 'x.nc'}"], tmp_path, pid, 3, port) for pid in range(3)]
    if how == "terminate":  # just past JAX's initialisation (its gloo link is up), before any part
        deadline = time.time() + 120
        while time.time() < deadline:
            if select.select([procs[victim].stdout], [], [], 1.0)[0]:
                line = procs[victim].stdout.readline()
                if not line or "[Gloo] Rank" in line:
                    break
    else:
        deadline = time.time() + 120
        while time.time() < deadline and not list(parts.glob("*/part-*.nc")):
            time.sleep(0.01)
    procs[victim].send_signal({"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "terminate": signal.SIGTERM}[how])
    t0 = time.time()
    try:
        for pid, proc in enumerate(procs):
            if pid == victim and how != "terminate":
                continue
            _, err = proc.communicate(timeout=60)
            if pid == victim:  # terminated: its own line
                assert proc.returncode == 143, err[-3000:]
                assert_one_line(err, "interrupted")
                continue
            why = {
                "kill": "stopped unexpectedly",
                "stop": "stopped answering for 5 s",
                "terminate": "stopped with exit code 143",
            }[how]
            assert proc.returncode == 2, err[-3000:]
            assert_one_line(err, f"error: distributed: process {victim} of 3 {why}", f"process {pid} stops too")
        assert time.time() - t0 < 30  # the runtime's own heartbeat timeout is 10 s; ours is immediate or 5 s
    finally:
        for proc in procs:
            proc.kill()
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("case", ["wrong_count", "no_coordinator", "mismatched_configs"])
def test_misconfigured_cluster_fails_fast(case, tmp_path):
    port = free_port()
    # the timeout is what these runs wait out: 2 s for a lone process, 8 s where a second process
    # must check in before it (both start together: seconds of margin on a loaded CI machine)
    timeout = {"wrong_count": 8, "no_coordinator": 2, "mismatched_configs": 10}[case]
    base = ["distributed=env", f"distributed.timeout_s={timeout}", f"out={tmp_path / 'x.nc'}", f"parts_dir={tmp_path / 'parts'}"]
    if case == "wrong_count":  # 3 announced, 2 started
        procs = [start(base, tmp_path, pid, 3, port) for pid in (0, 1)]
    elif case == "no_coordinator":  # process 1 alone: nobody serves the coordinator port
        procs = [start(base, tmp_path, 1, 2, port)]
    else:
        procs = [start([*base, f"grid.contexts=[{c}]"], tmp_path, pid, 2, port) for pid, c in ((0, 1024), (1, 2048))]
    t0 = time.time()
    outs = [p.communicate(timeout=90) for p in procs]
    assert time.time() - t0 < 60  # a timeout, not a hang
    assert all(p.returncode != 0 for p in procs)
    errors = [err for _, err in outs]
    if case == "wrong_count":  # process 0 gives up before JAX's runtime starts (no abort); process 1 hears it
        assert errors[0].strip().splitlines() == [errors[0].strip()] and "only 2 of 3 processes" in errors[0], errors[0][-2000:]
        assert [p.returncode for p in procs] == [2, 2], errors
        assert "process 0 did not start the run" in errors[1] or "is unreachable" in errors[1], errors[1][-2000:]
    else:
        expected = {"no_coordinator": "distributed.coordinator = '127.0.0.1:", "mismatched_configs": "differs from process 0"}[
            case
        ]
        lines = [e.strip().splitlines()[-1] for e in errors]
        assert any(line.startswith("error: ") and expected in line for line in lines), lines
    assert not (tmp_path / "x.nc").exists()
