"""A lost peer in a multi-process run is one line on every survivor, never the runtime's abort.

JAX's runtime answers a lost process with an abort and a C++ stack on every survivor (``client.h:
Terminating process because the JAX distributed service detected fatal errors``): at once where
process 0, which hosts its coordination service, goes; after its heartbeat timeout for any other.
moejax keeps a channel of its own beside it: process 0 holds a socket to each other process
(opened at the rendezvous), and every side sends a beat every ``beat_s``. A socket that closes
without a goodbye (the process was killed or crashed: its kernel closes it at once), or a peer
silent for half the runtime's timeout (stopped, or its host gone), is a lost peer. Process 0 tells
the others which rank it lost and waits for them to exit; every survivor prints one line naming
that rank and exits 2. The other processes reach the coordination service through a local relay
(:func:`relay`) that hides process 0's death from their runtime, which would otherwise abort in
the same instant. A process that ends by itself (done, its own error, interrupted) says goodbye
with its exit code first (:func:`end`); one that ended with an error stops the others too, after
``GRACE_S`` in which their own error of the same cause (a config that differs, seen by every
process) is printed instead.

Not covered: ``distributed=slurm`` (``auto``: JAX finds the cluster, no rendezvous, no channel),
and a peer lost after the last barrier while process 0 assembles the dataset for longer than the
runtime's heartbeat timeout (its coordination service then aborts process 0).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import time

from ..physics.specs import SpecError

GRACE_S = 1.0  # s: a peer ended with an error; this process's own error of the same cause goes first
CLOSE_S = GRACE_S + 2.0  # s: process 0, ending, waits this long at most for the others to exit first
EXIT_CODE = 2

_watch: Watch | None = None


class Watch:
    """This process's side of the channel: ``conns`` maps each peer's rank to its socket (process 0:
    every other rank; the others: rank 0)."""

    def __init__(self, pid: int, n: int, conns: dict[int, socket.socket], timeout_s: float):
        self.pid, self.n, self.conns = pid, n, conns
        self.silence_s = timeout_s / 2  # well before the runtime's heartbeat timeout (timeout_s)
        self.beat_s = min(1.0, timeout_s / 10)
        self.ended: dict[int, int] = {}  # rank -> exit code of the peers that said goodbye
        self.gone: dict[int, str] = {}  # rank -> why, of the peers lost or ended with an error
        self.needed = True  # process 0 after the last barrier: a peer lost then costs nothing
        self.lost_late = False
        self.left: int | None = None  # this process's exit code, once its message is printed (``leave``)
        self.zero_gone = False  # process 0 closed the channel after its goodbye
        self._exiting = threading.Lock()  # one message per process: its own error or a lost peer's
        self._sending = threading.Lock()
        for target in (self._listen, self._beat):
            threading.Thread(target=target, daemon=True, name=f"moejax-peers-{target.__name__}").start()

    def _send(self, line: str, ranks=None) -> None:
        with self._sending:
            for rank in self.conns if ranks is None else ranks:
                try:
                    self.conns[rank].sendall(line.encode() + b"\n")
                except OSError:
                    pass  # that peer is gone: its listener says so

    def _beat(self) -> None:
        while True:  # every peer, also one that has said goodbye: it may wait in the runtime's shutdown for us
            time.sleep(self.beat_s)
            self._send("beat")

    def _listen(self) -> None:
        selector = selectors.DefaultSelector()
        for rank, conn in self.conns.items():
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ, rank)
        heard = dict.fromkeys(self.conns, time.monotonic())
        pending = dict.fromkeys(self.conns, b"")
        while selector.get_map():
            for key, _ in selector.select(timeout=self.beat_s):
                rank = key.data
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed: fine after a goodbye, else the process died
                    selector.unregister(key.fileobj)
                    heard.pop(rank, None)
                    if rank not in self.ended:
                        self._lost(rank, "stopped unexpectedly (killed, crashed or disconnected)")
                    elif rank == 0:  # after its goodbye: this process's runtime shutdown cannot finish without it
                        self.zero_gone = True
                        if self.left is not None:
                            os._exit(self.left)
                    continue
                heard[rank] = time.monotonic()
                *lines, pending[rank] = (pending[rank] + data).split(b"\n")
                for line in lines:
                    self._message(rank, line.decode(errors="replace").split(" ", 2))
            now = time.monotonic()
            for rank, last in list(heard.items()):
                if rank not in self.ended and now - last > self.silence_s:
                    heard.pop(rank)
                    self._lost(rank, f"stopped answering for {self.silence_s:g} s (stopped, or its host is unreachable)")

    def _message(self, rank: int, words: list[str]) -> None:
        if words[0] == "end" and len(words) == 2 and words[1].lstrip("-").isdigit():
            code = self.ended[rank] = int(words[1])
            if code != 0:
                self.gone.setdefault(rank, f"stopped with exit code {code} (its own output says why)")
                time.sleep(GRACE_S)
                self._lost(rank, self.gone[rank])
        elif words[0] == "lost" and len(words) == 3 and words[1].isdigit():  # process 0 lost another rank
            self._lost(int(words[1]), words[2], forward=False)

    def _lost(self, rank: int, why: str, forward: bool = True) -> None:
        """One line naming the lost ``rank``, exit 2; process 0 tells the others and waits for them
        to exit. Nothing after the last barrier (process 0): :func:`peers_done`."""
        self.gone.setdefault(rank, why)
        if not self.needed:
            self.lost_late = True
            return
        if not self._exiting.acquire(blocking=False):
            return  # this process is already ending with its own message
        print(
            f"error: distributed: process {rank} of {self.n} {why}; process {self.pid} stops too "
            "(the parts written so far are kept: rerun the same command to finish)",
            file=sys.stderr,
            flush=True,
        )
        if self.pid == 0 and forward:
            others = [r for r in self.conns if r != rank]
            self._send(f"lost {rank} {why}", others)
            self.await_exit(others, CLOSE_S)
        os._exit(EXIT_CODE)

    def await_exit(self, ranks, seconds: float) -> None:
        """Process 0 waits up to ``seconds`` for the processes ``ranks`` to exit (their sockets
        close) before it exits itself: its exit ends JAX's coordination service, which the runtime
        in a process still running would answer with its abort (a C++ stack)."""
        selector = selectors.DefaultSelector()
        for r in ranks:
            selector.register(self.conns[r], selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        with selector:
            while selector.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    try:
                        if key.fileobj.recv(4096):
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    selector.unregister(key.fileobj)  # closed: that process has exited


def relay(host: str, port: int) -> str:
    """A local address that forwards to JAX's coordination service at ``host:port`` (process 0),
    for the runtime of the other processes. When process 0 dies, the runtime would abort at once (its
    error poll fails the moment the connection closes), racing this module's one line; the relay
    keeps the local side of the connection open instead, so the runtime waits for its heartbeat
    timeout, and the watcher, which saw the same close, names process 0 and exits first."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            local, _ = server.accept()
            try:
                remote = socket.create_connection((host, port), timeout=10.0)
            except OSError:
                local.close()
                continue
            remote.settimeout(None)
            threading.Thread(target=_forward, args=(local, remote), daemon=True, name="moejax-peers-relay").start()

    threading.Thread(target=serve, daemon=True, name="moejax-peers-relay").start()
    return f"127.0.0.1:{server.getsockname()[1]}"


def _forward(local: socket.socket, remote: socket.socket) -> None:
    """Copy bytes both ways until the local side (the runtime) closes; a remote side that closes
    is not passed on (what the runtime sends after it is dropped)."""
    remote_open = True
    selector = selectors.DefaultSelector()
    selector.register(local, selectors.EVENT_READ)
    selector.register(remote, selectors.EVENT_READ)
    with selector, local, remote:
        while True:
            for key, _ in selector.select():
                conn = key.fileobj
                if conn is remote and not remote_open:
                    continue
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                try:
                    if conn is remote:
                        if data:
                            local.sendall(data)
                        else:  # process 0 is gone: hold the runtime's connection open
                            remote_open = False
                            selector.unregister(remote)
                    elif not data:
                        return
                    elif remote_open:
                        remote.sendall(data)
                except OSError:
                    if conn is remote:
                        return  # the runtime's side failed
                    if remote_open:
                        remote_open = False
                        selector.unregister(remote)


def watch(pid: int, n: int, conns: dict[int, socket.socket], timeout_s: float) -> None:
    """Start watching the peers at ``conns`` (called once, after the rendezvous)."""
    global _watch
    if conns:
        _watch = Watch(pid, n, conns, timeout_s)


def peers_done() -> None:
    """Process 0 past the last barrier: every part is written, a peer lost from now on changes nothing
    (the run goes on; it only skips the runtime's shutdown, which would wait for the lost peer)."""
    if _watch is not None and _watch.pid == 0:
        _watch.needed = False


def end(code: int) -> None:
    """This process ends with exit ``code`` and its own message, printed next: tell the peers, and
    take the one message this process prints (if a lost peer's line is being printed instead, wait
    for the exit that follows it)."""
    if _watch is None:
        return
    if not _watch._exiting.acquire(blocking=False):
        time.sleep(10)  # the watcher prints the lost peer's line and exits this process
    _watch._send(f"end {code}")


def leave(code: int) -> None:
    """After this process's message: exit with ``code`` now, past the runtime's shutdown barrier,
    if this process failed (its peers stop as well: they will not reach that barrier, which would
    wait for them and then abort; process 0 first waits for them to exit) or a peer was lost after
    :func:`peers_done`."""
    if _watch is None:
        return
    if code != 0 or _watch.lost_late:
        sys.stdout.flush()
        sys.stderr.flush()
        if code != 0 and _watch.pid == 0:
            _watch.await_exit(list(_watch.conns), CLOSE_S)
        os._exit(code)
    sys.stdout.flush()
    _watch.left = code  # process 0 gone after its goodbye: exit (the runtime's shutdown cannot finish)
    if _watch.zero_gone:
        os._exit(code)
    _watch._exiting.release()  # done here; a peer lost during the runtime's shutdown is still one line


def wait_for_loss(error: Exception) -> SpecError:
    """A collective (gloo) failed because a peer left: give the watcher, which names that peer and
    exits, the time to; the one-line error to raise if it does not."""
    deadline = time.monotonic() + GRACE_S + CLOSE_S + 5.0  # process 0's grace, forwarding, a loaded machine
    while _watch is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return SpecError(f"distributed: a collective across the processes failed ({first}); a peer may have stopped")
