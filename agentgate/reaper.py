"""The worker's start-up reaper: stop what a killed worker of this host left running.

An agent runs with `PR_SET_PDEATHSIG`, so when its worker is killed (`kill -9`, OOM) the
agent itself dies with it — but its own children do not: they are re-parented and keep
editing a workspace that the retried attempt is about to use. Every child started by
`run_streaming` carries `AGENTGATE_PROCESS_TOKEN` and, in a worker, the owner marker
`AGENTGATE_WORKER_OWNER=<host id>:<worker pid>:<worker start time>`. A worker starting on the
same host (same host id, so the same host task queues and workspaces) looks through `/proc`
before it polls for work and stops every marked process whose owner is gone. The start time
makes a recycled PID harmless; the host id keeps one host's workers off another's processes
when several share a machine (as tests do).
"""

from __future__ import annotations

import logging
import os
import signal
import time

from agentgate.config import Settings
from agentgate.process import OWNER_VAR, TOKEN_VAR

log = logging.getLogger("agentgate.reaper")


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): a PID's birth certificate."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(b")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # a zombie is as good as gone
    return fields[19].decode()


def owner_marker(host_id: str) -> str:
    pid = os.getpid()
    return f"{host_id}:{pid}:{_start_time(pid) or 0}"


def claim(host_id: str) -> str:
    """Mark this process as the owner of the children it starts from now on (copied by run_streaming)."""
    marker = owner_marker(host_id)
    os.environ[OWNER_VAR] = marker
    return marker


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def _owner_alive(pid: int, start: str) -> bool:
    return _start_time(pid) == start


def find_orphans(host_id: str) -> list[int]:
    """PIDs of live processes started by a worker of `host_id` that no longer exists."""
    prefix = f"{OWNER_VAR}=".encode()
    token = f"{TOKEN_VAR}=".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        env = _environ(pid)
        owner = next((v[len(prefix) :] for v in env if v.startswith(prefix)), None)
        if owner is None or not any(v.startswith(token) for v in env):
            continue
        try:
            host, owner_pid, start = owner.decode().rsplit(":", 2)
        except ValueError:
            continue
        if host != host_id or not owner_pid.isdigit() or _owner_alive(int(owner_pid), start):
            continue
        if _start_time(pid) is None:  # exited (or a zombie) meanwhile
            continue
        found.append(pid)
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap_orphans(host_id: str, grace_seconds: float = 5.0) -> list[int]:
    """SIGTERM every orphan of this host, SIGKILL what is left after `grace_seconds`; returns the PIDs found."""
    orphans = find_orphans(host_id)
    if not orphans:
        return []
    log.warning("stopping %d process(es) left by a dead worker of host %s: %s", len(orphans), host_id, orphans)
    _signal(orphans, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    left = orphans
    while time.monotonic() < deadline:
        left = [pid for pid in orphans if _start_time(pid) is not None]
        if not left:
            return orphans
        time.sleep(0.05)
    _signal(left, signal.SIGKILL)
    return orphans


def startup(settings: Settings) -> list[int]:
    """At worker start-up: claim the owner marker, then reap; logged, never raises."""
    try:
        claim(settings.host_id)
        return reap_orphans(settings.host_id, min(settings.agent_grace_seconds, 10.0))
    except Exception:  # noqa: BLE001 - the worker must start even if /proc is unreadable
        log.exception("the start-up reaper failed")
        return []
