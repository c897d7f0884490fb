"""Child processes that really stop: own session, streamed output, whole-tree termination.

Every agent and gate command runs through `run_streaming`. The child gets its own
session (so one `killpg` reaches its process group), `PR_SET_PDEATHSIG` (so it dies if
the worker dies; armed by `_orphan_guard.py`, never by a `preexec_fn`) and an environment
marker `AGENTGATE_PROCESS_TOKEN`. Grandchildren
that start their own session escape `killpg`, but they inherit the marker, so
`terminate_tree` finds them through `/proc` and stops them too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_VAR = "AGENTGATE_PROCESS_TOKEN"
# Which worker started a child (`host:pid:start-time`, set by agentgate.reaper.claim): lets the next
# worker of this host find and stop what a killed worker left behind.
OWNER_VAR = "AGENTGATE_WORKER_OWNER"
_PR_SET_CHILD_SUBREAPER = 36

LineCallback = Callable[[str, str], None]


_GUARD = str(Path(__file__).with_name("_orphan_guard.py"))


def _guarded(argv: Sequence[str]) -> list[str]:
    """`argv` behind the orphan guard: it dies when the worker does (PDEATHSIG), without a `preexec_fn`
    (which can deadlock the forked child of a threaded 3.11 process, see agentgate/_orphan_guard.py)."""
    return [sys.executable, "-I", "-S", _GUARD, str(os.getpid()), "--", *argv]


def become_subreaper() -> bool:
    """Make orphaned descendants reparent to this process instead of init, so we can reap them."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


@dataclass
class ProcessOutcome:
    exit_code: int | None
    duration_ms: int
    timed_out: bool = False
    stalled: bool = False
    canceled: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    pid: int | None = None
    survivors: list[int] = field(default_factory=list)
    stopped: str | None = None  # why `should_stop` ended the run early
    limit: str | None = None  # the sandbox resource limit it hit, when the caller classified it (gates)


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def find_marked_processes(token: str) -> list[int]:
    """PIDs of live processes carrying `AGENTGATE_PROCESS_TOKEN=<token>` in their environment."""
    marker = f"{TOKEN_VAR}={token}".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        environ = _read_proc(pid, "environ")
        if environ and marker in environ.split(b"\0"):
            stat = _read_proc(pid, "stat")
            if stat and b") Z" in stat:  # zombie: already dead, just not reaped
                _reap(pid)
                continue
            found.append(pid)
    return found


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def _signal_all(pgid: int | None, pids: Sequence[int], sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


async def terminate_tree(pgid: int | None, token: str, grace_seconds: float) -> list[int]:
    """SIGTERM the group and every marked descendant, wait `grace_seconds`, then SIGKILL.

    Returns the PIDs still alive at the end (should be empty; reported, never hidden).
    """
    _signal_all(pgid, find_marked_processes(token), signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not find_marked_processes(token):
            return []
        await asyncio.sleep(0.05)
    for _ in range(3):
        left = find_marked_processes(token)
        if not left:
            return []
        _signal_all(pgid, left, signal.SIGKILL)
        await asyncio.sleep(0.1)
    return find_marked_processes(token)


async def _pump(
    stream: asyncio.StreamReader,
    sink: Path,
    name: str,
    on_line: LineCallback | None,
    counter: dict[str, int],
    activity_clock: list[float],
) -> None:
    from agentgate.artifacts import open_artifact_stream

    pending = b""
    # The artifact store's stream: output reaches the file redacted, a whole line at a time.
    with open_artifact_stream(sink) as fh:
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            fh.write(chunk)
            fh.flush()
            counter[name] += len(chunk)
            activity_clock[0] = time.monotonic()
            if on_line is None:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                on_line(name, raw.decode("utf-8", errors="replace"))
        if on_line is not None and pending:
            on_line(name, pending.decode("utf-8", errors="replace"))


async def run_streaming(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    on_line: LineCallback | None = None,
    timeout_seconds: float | None = None,
    idle_timeout_seconds: float | None = None,
    grace_seconds: float = 10.0,
    stdin_data: bytes | None = None,
    outcome: ProcessOutcome | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion, a limit, or cancellation; the tree is gone when this returns.

    `should_stop` is polled a few times a second: a non-empty answer stops the tree like a
    limit does and is kept in `outcome.stopped` (a CLI that would otherwise retry forever).

    Pass `outcome` to keep what is known when the call ends in `CancelledError` (which
    carries no return value): the caller then still records `canceled`, the byte counts
    and the survivors of a canceled run.
    """
    token = uuid.uuid4().hex
    child_env = dict(env)
    child_env[TOKEN_VAR] = token
    if owner := os.environ.get(OWNER_VAR):
        child_env[OWNER_VAR] = owner
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    stdout_path.touch()
    stderr_path.touch()
    started = time.monotonic()
    # A cancel that arrives while the process is being created must not lose the handle on it (it would
    # run on, unstopped, next to the retried attempt): the spawn completes, then the cancel is honoured below.
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *_guarded(argv),
            cwd=str(cwd),
            env=child_env,
            stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    )
    canceled_while_starting = False
    while True:
        try:
            proc = await asyncio.shield(spawn)
            break
        except asyncio.CancelledError:
            if spawn.done():
                proc = spawn.result()
                break
            canceled_while_starting = True
    pgid = proc.pid
    counter = {"stdout": 0, "stderr": 0}
    clock = [time.monotonic()]
    assert proc.stdout is not None and proc.stderr is not None
    pumps = asyncio.gather(
        _pump(proc.stdout, stdout_path, "stdout", on_line, counter, clock),
        _pump(proc.stderr, stderr_path, "stderr", on_line, counter, clock),
    )
    if outcome is None:
        outcome = ProcessOutcome(exit_code=None, duration_ms=0)
    outcome.pid = proc.pid

    def _fill() -> None:
        outcome.exit_code = proc.returncode
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        outcome.stdout_bytes = counter["stdout"]
        outcome.stderr_bytes = counter["stderr"]

    waiter = asyncio.ensure_future(proc.wait())
    try:
        if canceled_while_starting:
            raise asyncio.CancelledError()
        if stdin_data is not None and proc.stdin is not None:
            proc.stdin.write(stdin_data)
            await proc.stdin.drain()
            proc.stdin.close()
        while not waiter.done():
            now = time.monotonic()
            waits = [1.0 if should_stop is None else 0.25]
            if timeout_seconds is not None:
                waits.append(started + timeout_seconds - now)
            if idle_timeout_seconds is not None:
                waits.append(clock[0] + idle_timeout_seconds - now)
            await asyncio.wait([waiter], timeout=max(0.0, min(waits)))
            if waiter.done():
                break
            now = time.monotonic()
            if timeout_seconds is not None and now - started >= timeout_seconds:
                outcome.timed_out = True
                break
            if idle_timeout_seconds is not None and now - clock[0] >= idle_timeout_seconds:
                outcome.stalled = True
                break
            if should_stop is not None and (reason := should_stop()):
                outcome.stopped = reason
                break
    except asyncio.CancelledError:
        outcome.canceled = True
        # A second cancel (Temporal may deliver more than one) must not cut the cleanup short.
        outcome.survivors = await _finish_despite_cancel(terminate_tree(pgid, token, grace_seconds))
        await _finish_despite_cancel(_settle(waiter, pumps))
        _fill()
        raise
    if not waiter.done() or find_marked_processes(token):
        # A limit was hit, or the main process exited leaving descendants behind.
        outcome.survivors = await _finish_despite_cancel(terminate_tree(pgid, token, grace_seconds))
    await _finish_despite_cancel(_settle(waiter, pumps))
    _fill()
    return outcome


async def _finish_despite_cancel(coro):
    """Await `coro` to its end even if this task is canceled meanwhile; re-raise the cancel afterwards."""
    task = asyncio.ensure_future(coro)
    canceled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                result = task.result()
                break
            canceled = True
    if canceled:
        raise asyncio.CancelledError()
    return result


async def _settle(waiter: asyncio.Future, pumps: asyncio.Future) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(waiter), timeout=30)
    except (TimeoutError, asyncio.CancelledError):
        pass
    try:
        await asyncio.wait_for(asyncio.shield(pumps), timeout=5)
    except (TimeoutError, asyncio.CancelledError):
        pumps.cancel()


async def run_command(
    argv: Sequence[str], *, cwd: str | Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """A short helper command (git and the like): returns (exit code, stdout, stderr).

    No parent-death guard: these finish by themselves, and an extra interpreter start per git call
    would cost more than a clone left to complete after a worker's death."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except (TimeoutError, asyncio.CancelledError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
