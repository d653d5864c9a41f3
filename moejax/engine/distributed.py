"""Many processes, one grid: JAX's own multi-controller runtime, no home-made scheduler.

``jax.distributed.initialize`` joins the processes (gloo collectives on CPU); each evaluates the
chunks ``chunk_id % num_processes == process_id`` into the shared parts directory; after a
barrier, process 0 assembles the dataset, which is then exactly the single-process one. A process
that dies leaves the others' parts on disk, and the others stop with one line naming it
(``engine.peers``); rerunning completes only the missing chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import socket
import sys
import time

import jax
import numpy as np

from ..physics.specs import SpecError
from . import peers


def initialize(dist) -> tuple[int, int]:
    """Join the cluster described by the ``distributed`` config (its resolved values, attributes
    ``enabled``, ``auto``, ``coordinator``, ``num_processes``, ``process_id``, ``timeout_s``);
    (process_id, num_processes).

    ``auto``: let JAX detect SLURM / Open MPI / Kubernetes. Otherwise ``coordinator``,
    ``num_processes`` and ``process_id`` are given (the ``env`` config reads them from
    ``MOEJAX_COORDINATOR``, ``MOEJAX_NUM_PROCESSES``, ``MOEJAX_PROCESS_ID``). A wrong process count
    or an unreachable coordinator fails after ``timeout_s`` with one line, never hangs: before JAX's
    runtime starts (whose registration timeout is a fatal abort that cannot be caught), the
    processes check in with process 0 over a plain socket on the coordinator port (``_rendezvous``).
    """
    if not dist.enabled:
        return 0, 1
    _timeout(dist.timeout_s)
    if not dist.auto:
        n = _integer("num_processes", dist.num_processes, "MOEJAX_NUM_PROCESSES")
        pid = _integer("process_id", dist.process_id, "MOEJAX_PROCESS_ID")
        if n < 1:
            raise SpecError(f"distributed.num_processes = {n} is invalid: must be >= 1")
        if not 0 <= pid < n:
            raise SpecError(f"distributed.process_id = {pid} is invalid: must be in [0, {n})")
        if not dist.coordinator:
            raise SpecError("distributed.coordinator is missing: give host:port of process 0")
        _address(dist.coordinator)
        peers.watch(pid, n, _rendezvous(dist.coordinator, n, pid, _timeout(dist.timeout_s)), dist.timeout_s)
        print(f"moejax: process {pid} of {n} joining {dist.coordinator} (timeout {dist.timeout_s} s)", file=sys.stderr)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # its SIGTERM handler would replace engine.interrupts' and swallow the signal (the run went on)
    jax.config.update("jax_enable_preemption_service", False)
    kwargs = {}
    if not dist.auto:  # the others reach process 0's coordination service through a relay (engine.peers)
        coordinator = dist.coordinator if pid == 0 or n == 1 else peers.relay(*_address(dist.coordinator))
        kwargs = {"coordinator_address": coordinator, "num_processes": n, "process_id": pid}
    try:
        seconds = max(1, math.ceil(dist.timeout_s))
        # A lost peer is the peers' channel's to report (in half of timeout_s, engine.peers): the runtime's
        # heartbeat timeout leaves it room; its shutdown barrier waits as long as process 0 assembles.
        jax.distributed.initialize(
            **kwargs,
            initialization_timeout=seconds,
            heartbeat_timeout_seconds=2 * seconds + 10,
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
        )
    except Exception as e:  # noqa: BLE001 - the runtime raises several kinds; all mean "could not join"
        where = "auto-detected cluster" if dist.auto else f"coordinator {dist.coordinator} with {dist.num_processes} processes"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SpecError(f"distributed: could not join the {where} within {dist.timeout_s} s: {reason}") from None
    return jax.process_index(), jax.process_count()


SHUTDOWN_TIMEOUT_S = 7 * 24 * 3600  # the other processes wait at the runtime's shutdown while process 0 assembles


def _integer(field: str, value, env: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().lstrip("-").isdigit():
        raise SpecError(f"distributed.{field} = {value!r} is invalid: must be an integer (set by {env} with distributed=env)")
    return int(value)


def _timeout(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise SpecError(f"distributed.timeout_s = {value!r} is invalid: must be a number of seconds in (0, 1e6)")
    return float(value)


def _address(address) -> tuple[str, int]:
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(
            f"distributed.coordinator = {address!r} is invalid: must be host:port with a port in 1..65535 "
            "(set by MOEJAX_COORDINATOR with distributed=env)"
        )
    return host, int(port)


def _rendezvous(address: str, n: int, pid: int, timeout_s: float) -> dict[int, socket.socket]:
    """Every process checks in with process 0 before any of them starts JAX's runtime: process 0
    listens on the coordinator port until the other ``n - 1`` have sent their ids (else one line
    naming the missing ids after ``timeout_s``), then answers ``go <port>`` and frees the port for
    JAX's coordination service. A process other than 0 fails with one line if nobody listens within
    ``timeout_s`` or process 0 gives up. Each then connects to ``<port>``, where process 0 keeps a
    socket to it for the whole run (``engine.peers``): the sockets by peer rank are returned."""
    if n == 1:
        return {}
    if pid == 0:
        return _gather(address, n, timeout_s)
    conn = _connect(address, timeout_s)
    with conn:
        conn.sendall(f"{pid}\n".encode())
        conn.settimeout(2 * timeout_s + 5)
        received = b""
        try:
            while not received.endswith(b"\n") and len(received) < 64 and (more := conn.recv(64)):
                received += more
        except OSError:
            pass
        reply = received.decode(errors="replace").split()
    if len(reply) != 2 or reply[0] != "go" or not reply[1].isdigit():
        raise SpecError(
            f"distributed.coordinator = {address!r}: process 0 did not start the run "
            f"({'refused process id ' + str(pid) if reply else 'it gave up or exited'}; see its error)"
        )
    watch = _connect(f"{_address(address)[0]}:{reply[1]}", timeout_s)
    watch.settimeout(None)
    watch.sendall(f"{pid}\n".encode())
    _connect(address, timeout_s).close()  # JAX's coordination service is up on the same port
    return {0: watch}


def _listener(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", port))


def _gather(address: str, n: int, timeout_s: float) -> dict[int, socket.socket]:
    _, port = _address(address)
    try:
        server = _listener(port)
    except OSError as e:
        raise SpecError(
            f"distributed.coordinator = {address!r} is invalid: process 0 cannot listen on port {port} ({e.strerror})"
        ) from None

    def too_few(missing: list[int]) -> SpecError:
        return SpecError(
            f"distributed.num_processes = {n} is invalid: only {n - len(missing)} of {n} processes "
            f"joined {address} within {timeout_s:g} s (missing process ids "
            f"{', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''})"
        )

    joined = _accept_ids(server, n, time.monotonic() + timeout_s, too_few)
    watch = _listener(0)  # the peers' channel for the whole run, on a port of its own
    for conn in joined.values():  # the listener is closed: JAX may bind the port
        conn.sendall(f"go {watch.getsockname()[1]}\n".encode())
    for conn in joined.values():
        with conn:
            try:
                conn.recv(1)  # the other side closes first: no TIME_WAIT on the coordinator port here
            except OSError:
                pass

    def silent(missing: list[int]) -> SpecError:
        return SpecError(
            f"distributed: processes {', '.join(map(str, missing[:10]))} checked in but did not "
            "open the peers' channel (did they exit? see their errors)"
        )

    conns = _accept_ids(watch, n, time.monotonic() + timeout_s, silent)
    for conn in conns.values():
        conn.settimeout(None)
    return conns


def _accept_ids(server: socket.socket, n: int, deadline: float, timed_out) -> dict[int, socket.socket]:
    """Accept connections on ``server`` (closed on return) until processes 1..n-1 have each sent their
    id: the connections by id. One that sends no id (a port probe) is dropped; a repeated or
    out-of-range id is answered ``no``. Past ``deadline`` the connections so far are closed and
    ``timed_out(missing ids)``, a ``SpecError``, is raised."""
    joined: dict[int, socket.socket] = {}
    with server:
        server.settimeout(0.2)
        while len(joined) < n - 1:
            if time.monotonic() > deadline:
                for conn in joined.values():
                    conn.close()
                raise timed_out(sorted(set(range(1, n)) - set(joined)))
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5.0)
            try:
                other = int(conn.recv(16).decode().strip())
            except (OSError, ValueError):
                conn.close()  # not a moejax process (a port probe): ignore it
                continue
            if not 0 < other < n or other in joined:
                with contextlib.suppress(OSError):
                    conn.sendall(b"no\n")
                conn.close()
                continue
            joined[other] = conn
    return joined


def _connect(address: str, timeout_s: float) -> socket.socket:
    """A connection to ``address``; one line if nothing listens there within ``timeout_s``."""
    host, port = _address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection((host, port), timeout=1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise SpecError(
                    f"distributed.coordinator = {address!r} is unreachable: nothing listened there "
                    f"within {timeout_s:g} s (is process 0 running?)"
                ) from None
            time.sleep(0.1)


def check_same_config(digest: str) -> None:
    """Every process must evaluate the same grid: compare each process's config hash with process 0's."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(hashlib.sha256(digest.encode()).digest()[:8], dtype=np.int32)
    with _peer_lost_is_one_line():
        ours = multihost_utils.broadcast_one_to_all(mine)
        same = multihost_utils.process_allgather(np.array([np.array_equal(np.asarray(ours), mine)]))
    if not np.all(same):
        bad = [i for i, ok in enumerate(np.asarray(same).ravel()) if not ok]
        raise SpecError(
            f"distributed: processes {bad} were started with a config that differs from process 0's "
            "(same grid, overrides and catalogue required)"
        )


def barrier(name: str) -> None:
    from jax.experimental import multihost_utils

    with _peer_lost_is_one_line():
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def _peer_lost_is_one_line():
    """A collective fails at once (gloo: connection closed by peer) when a process stops: that is
    the peer watcher's one line (``engine.peers``), never a traceback."""
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        raise peers.wait_for_loss(e) from None
