"""Process control with real processes: cancel stops the whole tree, limits are classified errors.

An agent that leaves work behind is the complaint we must not earn: "stop" has to stop the
shell's background job, the child that ignores SIGTERM and the one that escaped into its
own session — checked by PID in /proc, not by trusting our own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path

from activities.build import _Progress, classify_outcome
from agentgate.agents.base import AgentEvent, ParsedRun, ToolCall
from agentgate.models import ErrorType, TokenUsage
from agentgate.process import ProcessOutcome, run_streaming

GRACE = 1.0
SLACK = 3.0

TREE_AGENT = textwrap.dedent(
    f"""
    import os, signal, subprocess, sys, time
    pids = os.environ["PIDS_FILE"]
    # A shell with a background job: the classic orphan.
    subprocess.Popen(["/bin/sh", "-c", "sleep 1000 & echo $! >> " + pids + "; wait"])
    # A child that ignores SIGTERM: only SIGKILL after the grace period stops it.
    subprocess.Popen([{sys.executable!r}, "-c",
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(os.environ['PIDS_FILE'], 'a').write(str(os.getpid()) + '\\\\n'); time.sleep(1000)"])
    # A child that leaves our process group and session: killpg cannot reach it.
    subprocess.Popen([{sys.executable!r}, "-c",
        "import os, time; os.setsid(); "
        "open(os.environ['PIDS_FILE'], 'a').write(str(os.getpid()) + '\\\\n'); time.sleep(1000)"])
    with open(pids, "a") as fh:
        fh.write(str(os.getpid()) + "\\n")
    print("tree started", flush=True)
    while True:
        time.sleep(1)
    """
)


def alive(pid: int) -> bool:
    """True unless /proc says the PID is gone or a zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _wait_for_pids(path: Path, count: int, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(x) for x in path.read_text().split()]
            if len(pids) >= count:
                return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"agent tree did not start: {path.read_text() if path.exists() else 'no pid file'}")


async def test_cancel_stops_every_process_of_the_tree(tmp_path):
    pids_file = tmp_path / "pids"
    script = tmp_path / "agent.py"
    script.write_text(TREE_AGENT)
    outcome = ProcessOutcome(exit_code=None, duration_ms=0)
    task = asyncio.create_task(
        run_streaming(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "PIDS_FILE": str(pids_file)},
            stdout_path=tmp_path / "out.log",
            stderr_path=tmp_path / "err.log",
            grace_seconds=GRACE,
            outcome=outcome,
        )
    )
    pids = await _wait_for_pids(pids_file, 4)
    assert all(alive(p) for p in pids)

    started = time.monotonic()
    task.cancel()
    try:
        await task
        raise AssertionError("run_streaming swallowed the cancellation")
    except asyncio.CancelledError:
        pass
    elapsed = time.monotonic() - started

    assert elapsed < GRACE + SLACK, elapsed
    still = [p for p in pids if alive(p)]
    assert still == [], f"alive after cancel: {still}"
    assert outcome.canceled and outcome.survivors == []
    assert "tree started" in (tmp_path / "out.log").read_text()
    assert outcome.stdout_bytes > 0 and outcome.pid in pids


async def _run_limited(tmp_path: Path, command: str, **limits) -> ProcessOutcome:
    return await run_streaming(
        ["/bin/sh", "-c", command],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdout_path=tmp_path / "o.log",
        stderr_path=tmp_path / "e.log",
        grace_seconds=0.5,
        **limits,
    )


async def test_idle_timeout_is_agent_stalled(tmp_path):
    outcome = await _run_limited(tmp_path, "echo started; sleep 30", idle_timeout_seconds=0.5, timeout_seconds=20)
    assert outcome.stalled and not outcome.timed_out
    error, found = classify_outcome(outcome, ParsedRun(), 3)
    assert error.type == ErrorType.AGENT_STALLED and error.iteration == 3 and found is None


async def test_iteration_timeout_is_agent_timeout(tmp_path):
    # Output every 0.1 s keeps the idle clock happy; only the iteration limit can stop it.
    outcome = await _run_limited(
        tmp_path, "while true; do echo tick; sleep 0.1; done", idle_timeout_seconds=5, timeout_seconds=0.8
    )
    assert outcome.timed_out and not outcome.stalled
    error, found = classify_outcome(outcome, ParsedRun(), 1)
    assert error.type == ErrorType.AGENT_TIMEOUT and found is None
    assert outcome.survivors == []


def test_cancel_wins_over_other_signals():
    outcome = ProcessOutcome(exit_code=None, duration_ms=5, canceled=True, timed_out=True)
    error, _ = classify_outcome(outcome, ParsedRun(is_error=True, error_kind="rate_limit"), 1)
    assert error.type == ErrorType.CANCELED


def test_clean_exit_is_no_error_and_unknown_failure_is_a_crash():
    assert classify_outcome(ProcessOutcome(exit_code=0, duration_ms=1), ParsedRun(), 1) == (None, None)
    error, found = classify_outcome(ProcessOutcome(exit_code=3, duration_ms=1), ParsedRun(), 1, "boom\n")
    assert error.type == ErrorType.AGENT_CRASH and found is None and "boom" in error.message


def test_heartbeat_progress_has_turns_tokens_cost_and_last_tool():
    progress = _Progress()
    progress.observe(AgentEvent(kind="tool_call", tool=ToolCall(name="Bash")))
    progress.observe(AgentEvent(kind="usage", tokens=TokenUsage(input=10, output=5, cache_read=100), turns=2))
    progress.observe(AgentEvent(kind="usage", tokens=TokenUsage(output=1), cost_usd=0.25, turns=3))
    details = progress.details()
    assert details["turns"] == 3 and details["tokens"] == 116 and details["cost_usd"] == 0.25
    assert details["last_tool"] == "Bash" and details["tool_calls"] == 1
    assert details["tokens_by_kind"] == {"input": 10, "output": 6, "cache_creation": 0, "cache_read": 100}




async def test_a_cancel_while_the_prompt_is_still_being_written_stops_the_agent(tmp_path):
    """Temporal can cancel a build at any await. One of them is the write of the prompt to the agent's
    stdin, which blocks while the agent has not read it yet: the agent must still be stopped, not left
    running next to the retried attempt."""
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        run_streaming(
            ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"],  # never reads its stdin
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"]},
            stdout_path=tmp_path / "out",
            stderr_path=tmp_path / "err",
            grace_seconds=GRACE,
            stdin_data=b"x" * (4 * 1024 * 1024),  # far more than a pipe holds: the write blocks
        )
    )
    deadline = time.monotonic() + 15
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the agent did not start"
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert not alive(pid), f"the agent {pid} outlived the cancel"
    assert not _marked_children(), _marked_children()


def _marked_children() -> list[int]:
    """Live children of this test process carrying a run_streaming tree marker."""
    from agentgate.process import TOKEN_VAR

    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and f"{TOKEN_VAR}=".encode() in env and alive(int(entry)):
            found.append(int(entry))
    return found



PARENT = """
import asyncio, sys
from pathlib import Path
from agentgate.process import run_streaming
tmp = Path(sys.argv[1])
argv = ["/bin/sh", "-c", f"echo $$ > {tmp}/agent.pid; exec sleep 120"]
asyncio.run(run_streaming(argv, cwd=tmp, env={"PATH": "/usr/bin:/bin"},
                          stdout_path=tmp / "out", stderr_path=tmp / "err", grace_seconds=1))
"""


def test_the_agent_dies_with_its_worker_without_a_preexec_fn(tmp_path):
    """A worker killed with -9 takes its agent along (PDEATHSIG, armed by agentgate/_orphan_guard.py after a
    plain fork+exec: a `preexec_fn` can deadlock the forked child of a threaded 3.11 worker)."""
    import subprocess

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ((tmp_path / "agent.pid").exists() and (tmp_path / "agent.pid").read_text().strip()):
            assert time.monotonic() < deadline and parent.poll() is None, "the agent did not start"
            time.sleep(0.05)
        agent = int((tmp_path / "agent.pid").read_text())
        assert _parent_of(agent) == parent.pid  # the guard exec'd the command: no extra process in between
        os.kill(parent.pid, 9)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(agent):
            assert time.monotonic() < deadline, f"agent {agent} outlived its killed worker"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
