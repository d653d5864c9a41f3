"""The peers' channel of a multi-process run (``engine.peers``) without JAX: its rules on sockets
between two watchers in one fresh process (a watcher that decides a peer is lost exits the process,
so never in the test process itself), and the relay that hides process 0's death from a runtime.
The whole-run behaviour (three JAX processes, one killed, stopped or terminated) is
``tests/test_scale.py::test_a_lost_peer_is_one_line_on_every_survivor``."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time

from cli_runs import ROOT, _env

from moejax.engine import peers


def _two_watchers(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh process after ``w0, w1``: the watchers of ranks 0 and 1 of a
    two-process run, joined by a socket pair, ``timeout_s`` 1 (beats every 0.1 s, silence 0.5 s)."""
    script = textwrap.dedent(
        """
        import socket, time
        from moejax.engine.peers import Watch
        a, b = socket.socketpair()
        w0, w1 = Watch(0, 2, {1: a}, 1.0), Watch(1, 2, {0: b}, 1.0)
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(None), capture_output=True, text=True, timeout=60)


def test_a_peer_that_said_goodbye_still_hears_beats():
    """Rank 1 has ended (goodbye, exit 0) and waits in the runtime's shutdown while process 0 is
    still assembling: process 0 goes on beating it, so rank 1 never takes process 0 for silent (it
    did: process 0 stopped beating ended ranks, and rank 1 printed "process 0 stopped answering")."""
    proc = _two_watchers(
        """
        w1._send("end 0")
        time.sleep(2.0)  # four silence periods
        print("alive")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr[-2000:]


def test_a_silent_peer_is_one_line_naming_it():
    """Rank 1 stops beating (a stopped process, a host gone): process 0 names it after the silence
    period, in one line, exit 2."""
    proc = _two_watchers(
        """
        w1._send = lambda *a, **k: None  # rank 1 falls silent
        time.sleep(5.0)
        print("alive")
        """
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
    assert lines == [
        "error: distributed: process 1 of 2 stopped answering for 0.5 s (stopped, or its host is unreachable); "
        "process 0 stops too (the parts written so far are kept: rerun the same command to finish)"
    ]


def test_the_relay_hides_a_closed_coordinator():
    """What reaches process 0's coordination service through the relay arrives; when process 0's
    side closes, the runtime's side stays open (no end of file), and what it sends is dropped."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    host, port = peers.relay("127.0.0.1", server.getsockname()[1]).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as runtime:
        runtime.sendall(b"ping")
        deadline = time.time() + 5
        while not accepted and time.time() < deadline:
            time.sleep(0.01)
        coordinator = accepted[0]
        coordinator.settimeout(5)
        assert coordinator.recv(4) == b"ping"
        coordinator.sendall(b"pong")
        assert runtime.recv(4) == b"pong"
        coordinator.close()  # process 0 dies
        server.close()
        runtime.settimeout(1.0)
        time.sleep(0.2)
        runtime.sendall(b"heartbeat")  # dropped, no error
        try:
            received = runtime.recv(16)
        except TimeoutError:
            received = None  # still open: what the runtime must see
        assert received is None, received
