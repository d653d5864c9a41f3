"""Ctrl-C and SIGTERM honoured at safe points only, never inside netCDF I/O.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can land inside JAX, xarray or HDF5 while
they hold a lock or a half-written file; the interpreter's exit handlers (JAX's backend clean-up,
HDF5's close) can then wait on that lock for ever. Inside :func:`safe_points` a signal is only
noted, and the loop raises it between two steps (one chunk computed and written, one part
assembled); a second signal raises at once, for a user who will not wait. No handler of this module
raises inside :func:`deferred` (every netCDF read and write of a run): a signal that must stop the
run there is raised when the I/O ends; nor inside netCDF library code or a finaliser reached some
other way (garbage collection): there the signal is delivered again ``RETRY_S`` later; raised where
Python can only print it (a garbage-collection callback), it is dropped silently and comes again. The first
signal's number is kept (:func:`received`), so the command exits with 128 + it (130 for SIGINT,
143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

# netCDF I/O in progress; a stop waiting for its end; the first signal; a command's run (install() to ignore())
_state = {"io": 0, "late": False, "signum": None, "command": False}


def received() -> int | None:
    """The number of the first SIGINT/SIGTERM a handler of this module saw (None: none)."""
    return _state["signum"]


RETRY_S = 0.5  # s: a stop not taken yet (deferred in library code, or swallowed) is delivered again after this
UNSAFE = ("/xarray/", "/netCDF4/", "/h5netcdf/", "/h5py/")  # library code that may hold HDF5's lock


def _unsafe(frame) -> bool:
    """Whether the interrupted code is netCDF/HDF5 library code or a finaliser (``__del__``: an
    exception there is only printed, and it may be closing an HDF5 file), at any depth."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or any(s in frame.f_code.co_filename for s in UNSAFE):
            return True
        frame = frame.f_back
    return False


def _again(signum) -> None:
    """Deliver ``signum`` to this process again in ``RETRY_S`` (ignored by then if the run has ended);
    only during a command's run (:func:`install`), never in a library caller's process."""
    if not _state["command"]:
        return
    timer = threading.Timer(RETRY_S, _deliver, (signum,))
    timer.daemon = True
    timer.start()


def _deliver(signum) -> None:
    """The retry of :func:`_again`, dropped once the command's run has ended (its handlers may be
    gone by then: an in-process caller's, or the default that kills)."""
    if _state["command"]:
        os.kill(os.getpid(), signum)


def _stop(signum, frame) -> None:
    """A signal that stops the run: ``KeyboardInterrupt`` now; inside :func:`deferred` when the
    I/O ends; inside library netCDF code or a finaliser a little later (delivered again). It is
    delivered again anyway in case the exception was swallowed (raised inside a finaliser)."""
    if _state["signum"] is None:
        _state["signum"] = signum
    if _state["io"]:
        _state["late"] = True
        return
    _again(signum)
    if not _unsafe(frame):
        raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
    """``sys.unraisablehook`` during a command's run. A ``KeyboardInterrupt`` of this module's
    handler raised where Python cannot propagate it (a garbage-collection callback such as JAX's
    ``_xla_gc_callback``, a weakref callback) is swallowed and printed as "Exception ignored in ..."
    with a traceback: the one-line promise broken (1 of 50 signal-storm tries, 2026-12-07). The stop
    is delivered again (``_again``), so it is dropped silently; anything else goes to the previous hook."""
    if unraisable.exc_type is KeyboardInterrupt and _state["command"] and _state["signum"] is not None:
        return
    _state["unraisablehook"](unraisable)


def _own_unraisable(on: bool) -> None:
    if on and sys.unraisablehook is not _unraisable:
        _state["unraisablehook"], sys.unraisablehook = sys.unraisablehook, _unraisable
    elif not on and sys.unraisablehook is _unraisable:
        sys.unraisablehook = _state["unraisablehook"]


def interrupt(signum, frame) -> None:
    """Handler outside safe points: raise ``KeyboardInterrupt``, never inside netCDF I/O."""
    _stop(signum, frame)


@contextlib.contextmanager
def deferred():
    """Run netCDF I/O (the main thread's) with signals deferred: a handler of this module only
    notes a signal here; a stop it asked for raises ``KeyboardInterrupt`` once the I/O has ended
    normally (an exception from inside propagates as it is). Nests."""
    _state["io"] += 1
    try:
        yield
    finally:
        _state["io"] -= 1
    if not _state["io"] and _state["late"]:
        _state["late"] = False
        raise KeyboardInterrupt


class PendingInterrupt:
    """Whether Ctrl-C or SIGTERM arrived; :meth:`check` raises ``KeyboardInterrupt`` if so."""

    def __init__(self) -> None:
        self.requested = False

    def note(self, signum, frame) -> None:
        if _state["signum"] is None:
            _state["signum"] = signum
        if self.requested:  # the second signal: now (after the netCDF I/O in progress)
            _stop(signum, frame)
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _handled() -> list:
    """SIGINT and SIGTERM, less SIGINT when the process was started with it ignored (``nohup``, a
    background job of a non-interactive shell), as Unix expects."""
    return [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]


def install() -> None:
    """A command's run begins: :func:`interrupt` handles SIGINT and SIGTERM (SIGTERM then unwinds
    like Ctrl-C: temporaries removed, parts kept). SIGINT stays ignored when the process started
    with it ignored. Outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.setdefault("sigint_ignored", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)  # as the process started
    _state.update(io=0, late=False, signum=None, command=True)
    _own_unraisable(True)
    signal.signal(signal.SIGTERM, interrupt)
    if not _state["sigint_ignored"]:
        signal.signal(signal.SIGINT, interrupt)


def ignore() -> None:
    """A command's run has ended, whatever way: the process only reports and exits, so SIGINT and
    SIGTERM are ignored from now on (a late one must not kill it half-way, in its exit handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _state["command"] = False
        _own_unraisable(False)


@contextlib.contextmanager
def safe_points():
    """Yield a :class:`PendingInterrupt` whose ``check()`` the caller runs between steps.

    SIGINT is left alone when the process was started with it ignored. Outside the main thread,
    where Python cannot install handlers, signals keep their usual behaviour. The previous handlers
    come back on exit.
    """
    pending = PendingInterrupt()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {s: signal.signal(s, pending.note) for s in _handled()}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    pending.check()  # a signal after the last step still interrupts


def run_command(run) -> int:
    """An argparse command's body (``python -m moejax.plot``, ``moejax.report``): Ctrl-C or SIGTERM
    unwinds it as Ctrl-C does, after any netCDF I/O in progress, so its clean-up runs (no
    half-written figure or page is left), then one line ``interrupted``, signals ignored from then
    on (as a Hydra command's end: the signal's retry must not print a second line) and exit 128 +
    the signal (130, 143). A body that ends otherwise gets the previous handlers back (a library
    caller's process is left as it was)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install()
    try:
        code = run()
    except KeyboardInterrupt:
        ignore()
        print("interrupted", file=sys.stderr)
        return 128 + (received() or signal.SIGINT)
    except BaseException:
        _restore(previous)
        raise
    _restore(previous)
    return code


def _restore(handlers: dict) -> None:
    if threading.current_thread() is threading.main_thread():
        _state["command"] = False
        _own_unraisable(False)
        for s, handler in handlers.items():
            signal.signal(s, handler)
