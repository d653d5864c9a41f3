"""A ``python -m moejax.<command>`` process that is still starting: its imports (JAX, Hydra) take
seconds before the command's own signal handling (``engine.interrupts``) begins."""

import os
import signal
import sys


def _stopped_while_starting(signum, frame) -> None:
    """Ctrl-C or SIGTERM while a ``python -m moejax.<command>`` process starts (its imports take
    seconds), before the command's own handling (``engine.interrupts``) begins: nothing is written
    yet, so one line and exit 128 + the signal, not an import traceback."""
    os.write(2, b"interrupted\n")
    os._exit(128 + signum)


if sys.argv[:1] == ["-m"]:  # runpy is importing this package for `python -m moejax.<command>`
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
        signal.signal(signal.SIGINT, _stopped_while_starting)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stopped_while_starting)
