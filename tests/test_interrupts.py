"""Ctrl-C and SIGTERM inside ``safe_points``: noted, raised at the next check, at once when repeated."""

import os
import signal

import pytest

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
