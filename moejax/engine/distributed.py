"""Many processes, one grid: JAX's own multi-controller runtime, no home-made scheduler.

``jax.distributed.initialize`` joins the processes (gloo collectives on CPU); each evaluates the
chunks ``chunk_id % num_processes == process_id`` into the shared parts directory; after a
barrier, process 0 assembles the dataset, which is then exactly the single-process one. A process
that dies leaves the others' parts on disk; rerunning completes only the missing chunks.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import time

import jax
import numpy as np

from ..physics.specs import SpecError


def initialize(dist) -> tuple[int, int]:
    """Join the cluster described by the ``distributed`` config; (process_id, num_processes).

    ``auto``: let JAX detect SLURM / Open MPI / Kubernetes. Otherwise ``coordinator``,
    ``num_processes`` and ``process_id`` are given (the ``env`` config reads them from
    ``MOEJAX_COORDINATOR``, ``MOEJAX_NUM_PROCESSES``, ``MOEJAX_PROCESS_ID``). A wrong process count
    or an unreachable coordinator fails after ``timeout_s``, never hangs: an unreachable coordinator
    with one line; a process count that never completes through JAX's own fatal
    ``DEADLINE_EXCEEDED ... RegisterTask`` abort (the runtime ends the process; it cannot be caught).
    """
    if not dist.enabled:
        return 0, 1
    if not dist.auto:
        n, pid = int(dist.num_processes), int(dist.process_id)
        if n < 1:
            raise SpecError(f"distributed.num_processes = {n} is invalid: must be >= 1")
        if not 0 <= pid < n:
            raise SpecError(f"distributed.process_id = {pid} is invalid: must be in [0, {n})")
        if not dist.coordinator:
            raise SpecError("distributed.coordinator is missing: give host:port of process 0")
        if pid > 0:
            _wait_for_coordinator(dist.coordinator, float(dist.timeout_s))
        print(f"moejax: process {pid} of {n} joining {dist.coordinator} (timeout {dist.timeout_s} s)", file=sys.stderr)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {} if dist.auto else {"coordinator_address": dist.coordinator, "num_processes": int(dist.num_processes),
                                   "process_id": int(dist.process_id)}
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=int(dist.timeout_s),
                                   heartbeat_timeout_seconds=int(dist.timeout_s), shutdown_timeout_seconds=int(dist.timeout_s))
    except Exception as e:  # noqa: BLE001 - the runtime raises several kinds; all mean "could not join"
        where = "auto-detected cluster" if dist.auto else f"coordinator {dist.coordinator} with {dist.num_processes} processes"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SpecError(f"distributed: could not join the {where} within {dist.timeout_s} s: {reason}") from None
    return jax.process_index(), jax.process_count()


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Fail with one line if nothing listens at ``address`` within ``timeout_s`` (process 0 starts
    the coordinator service inside ``jax.distributed.initialize``)."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SpecError(f"distributed.coordinator = {address!r} is unreachable: nothing listened there "
                                f"within {timeout_s:g} s (is process 0 running?)") from None
            time.sleep(0.1)


def check_same_config(digest: str) -> None:
    """Every process must evaluate the same grid: compare each process's config hash with process 0's."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(hashlib.sha256(digest.encode()).digest()[:8], dtype=np.int32)
    ours = multihost_utils.broadcast_one_to_all(mine)
    same = multihost_utils.process_allgather(np.array([np.array_equal(np.asarray(ours), mine)]))
    if not np.all(same):
        bad = [i for i, ok in enumerate(np.asarray(same).ravel()) if not ok]
        raise SpecError(f"distributed: processes {bad} were started with a config that differs from process 0's "
                        "(same grid, overrides and catalogue required)")


def barrier(name: str) -> None:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
