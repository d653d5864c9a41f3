"""Ctrl-C and SIGTERM honoured at safe points only.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can land inside JAX, xarray or HDF5 while
they hold a lock or a half-written file; the interpreter's exit handlers (JAX's backend clean-up,
HDF5's close) can then wait on that lock for ever. Inside :func:`safe_points` a signal is only
noted, and the loop raises it between two steps (one chunk computed and written, one part
assembled); a second signal raises at once, for a user who will not wait.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class PendingInterrupt:
    """Whether Ctrl-C or SIGTERM arrived; :meth:`check` raises ``KeyboardInterrupt`` if so."""

    def __init__(self) -> None:
        self.requested = False

    def note(self, signum, frame) -> None:
        if self.requested:  # the second signal: now
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def safe_points():
    """Yield a :class:`PendingInterrupt` whose ``check()`` the caller runs between steps.

    SIGINT is left alone when the process was started with it ignored (``nohup``, a background
    job of a non-interactive shell), as Unix expects. Outside the main thread, where Python cannot
    install handlers, signals keep their usual behaviour. The previous handlers come back on exit.
    """
    pending = PendingInterrupt()
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, pending.note) for s in signals}
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    pending.check()  # a signal after the last step still interrupts
