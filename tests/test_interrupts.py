"""Ctrl-C and SIGTERM inside ``safe_points``: noted, raised at the next check, at once when repeated."""

import gc
import os
import signal
import sys
import time

import pytest

from moejax.engine import interrupts
from moejax.engine.interrupts import safe_points


@pytest.fixture(autouse=True)
def default_handlers():
    """Each test starts as a fresh interactive process does: Python's SIGINT handler, SIGTERM's
    default. The suite runs commands in-process in the same worker, and a command's end ignores
    both signals (``interrupts.ignore``); one such run left SIGINT ignored before these tests in a
    CI run, which made ``safe_points`` (rightly) leave SIGINT alone."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_waits_for_the_next_check(sig):
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with safe_points() as pending:
            for step in range(5):
                if step == 1:
                    os.kill(os.getpid(), sig)  # delivered before the next bytecode of this thread
                steps.append(step)  # the step in progress finishes
                pending.check()
    assert steps == [0, 1]


def test_a_second_signal_raises_at_once():
    with pytest.raises(KeyboardInterrupt):
        with safe_points():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second signal did not raise")


def test_a_signal_after_the_last_check_still_interrupts():
    with pytest.raises(KeyboardInterrupt):
        with safe_points():
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_inside_a_gc_callback_is_silent_and_comes_again(monkeypatch):
    """A signal handled inside a garbage-collection callback (JAX registers one) raises where Python
    can only print "Exception ignored in ..." and a traceback (1 of 50 signal-storm tries printed
    one): nothing is printed, and the stop is delivered again and unwinds the run."""
    fired, printed = [], []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)  # where Python reports it (pytest's own hook otherwise)

    def callback(phase, info):
        if not fired:
            fired.append(phase)
            signal.raise_signal(signal.SIGTERM)  # the handler runs in this callback's frame

    interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            gc.callbacks.append(callback)
            try:
                gc.collect()  # the KeyboardInterrupt is swallowed here
            finally:
                gc.callbacks.remove(callback)
            time.sleep(10 * interrupts.RETRY_S)  # ... and comes again within RETRY_S
    finally:
        interrupts.ignore()
    assert fired and interrupts.received() == signal.SIGTERM
    assert not printed and sys.unraisablehook == printed.append  # the previous hook back after the run
    time.sleep(2 * interrupts.RETRY_S)  # the retry's own retry, if any, is dropped: the run has ended


def test_handlers_are_restored_and_an_ignored_sigint_stays_ignored():
    before = signal.getsignal(signal.SIGTERM)
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with safe_points() as pending:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            pending.check()  # nothing pending: the signal was ignored
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGINT, ignored)


def test_a_second_signal_inside_netcdf_io_waits_for_its_end():
    """Inside ``deferred()`` (every netCDF read and write) no handler raises: the second signal is
    raised when the I/O ends, never inside it (HDF5's lock held: the old deadlock)."""
    from moejax.engine.interrupts import deferred

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with safe_points():
            os.kill(os.getpid(), signal.SIGTERM)
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("write finished")
            steps.append("after the write")
    assert steps == ["write finished"]


def test_signals_at_random_moments_end_every_run_cleanly():
    """1-4 SIGINTs or SIGTERMs at random moments (seeded) to a running sweep, a few tries: each run
    ends within the limit, exit 128 + signal and one ``interrupted`` line (tests/signal_storm.py;
    run by hand with 50 tries: ``python tests/signal_storm.py 50``)."""
    from signal_storm import storm

    results = storm(2, seed=7)
    assert all(ok for ok, _ in results), results


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mapped libraries (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_starts_is_one_line(sig, tmp_path):
    """Ctrl-C or SIGTERM while ``python -m moejax.sweep`` is still importing (jaxlib loading, seconds
    before the command's own handling): one line ``interrupted``, exit 128 + the signal, no file.
    Before: SIGINT was swallowed inside a JAX garbage-collection callback ("Exception ignored ...
    KeyboardInterrupt") and the run went on to exit 0; SIGTERM killed the process silently (-15)."""
    import subprocess
    import sys
    import time

    from cli_runs import ROOT, _env

    proc = subprocess.Popen(
        [sys.executable, "-m", "moejax.sweep", "+grid=quick", f"out={tmp_path / 'x.nc'}", f"parts_dir={tmp_path / 'p'}"],
        cwd=ROOT,
        env=_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # moejax's package is importing jax: its handler is set
        with open(f"/proc/{proc.pid}/maps") as maps:
            if "jaxlib" in maps.read():
                break
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig and err.strip() == "interrupted", (proc.returncode, err[-2000:])
    assert not list(tmp_path.iterdir())
