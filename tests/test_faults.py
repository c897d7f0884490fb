"""Fault tests that are fast enough for the default suite (the long ones are in tests/test_chaos.py).

Real parts only: the session's Temporal dev server, real workers and APIs (in process or as
their own OS processes), real agents (small shell/Python programs) and a real full disk (a
tiny tmpfs when this machine lets us mount one). Every process a test starts is stopped by
its PID; agents record their PIDs so the tests can check that none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from agentgate.artifacts import QUARANTINE_DIR, ArtifactStore
from agentgate.config import Settings
from agentgate.models import RunContext
from agentgate.observability import metrics
from agentgate.observability.tail import read_events
from agentgate.reaper import _start_time
from agentgate.storage_check import validate_store
from tests.conftest import free_port, running_worker
from tests.test_workflow import make_order
from workflows.work_order import WorkOrderWorkflow

ROOT = Path(__file__).resolve().parents[1]
WAIT = 120.0  # generous: a loaded 2-core machine; a test fails only when the thing never happens


# -- helpers shared with tests/test_chaos.py ------------------------------------------------------------


async def until(predicate, what: str, timeout: float = WAIT, step: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout:g} s waiting for: {what}"
        await asyncio.sleep(step)


class PidLog:
    """Agents append `<pid> <start time>` lines here (their shell, and any child they start).

    The start time (field 22 of /proc/<pid>/stat) makes a recycled PID harmless: a PID counts as
    alive only while the process with that PID is still the one that wrote the line.
    """

    def __init__(self, root: Path) -> None:
        self.dir = root / "pids"
        self.dir.mkdir(parents=True, exist_ok=True)

    def record_command(self) -> str:
        """Shell that records the agent's own PID (the `/bin/sh -c` the command driver runs) under its order id."""
        return f'echo "$$ $(cut -d" " -f22 /proc/$$/stat)" >> {self.dir}/"$AGENTGATE_WORK_ORDER_ID"'

    def entries(self) -> list[tuple[str, int, str]]:
        found = []
        for path in sorted(self.dir.iterdir()):
            for line in path.read_text().splitlines():
                pid, start = line.split()
                found.append((path.name, int(pid), start))
        return found

    def orders(self) -> set[str]:
        return {p.name for p in self.dir.iterdir() if p.read_text().strip()}

    def alive(self) -> list[int]:
        return [pid for _, pid, start in self.entries() if _start_time(pid) == start]


class ApiProcess:
    """`agentgate api` as its own OS process on a fixed port, so it can be killed and started again."""

    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.settings, self.port, self.log_path = settings, port, log
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
        env.update(
            PYTHONPATH=str(ROOT),
            AGENTGATE_HOME=str(self.settings.home),
            AGENTGATE_TEMPORAL_ADDRESS=self.settings.temporal_address,
            AGENTGATE_TASK_QUEUE=self.settings.task_queue,
            AGENTGATE_API_HOST="127.0.0.1",
            AGENTGATE_API_PORT=str(self.port),
        )
        if self.settings.artifact_dir is not None:
            env["AGENTGATE_ARTIFACT_DIR"] = str(self.settings.artifact_dir)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()/stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentgate.cli", "api"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def ready(self) -> None:
        async def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-2000:]
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{self.url}/health/live")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(up, f"the API on port {self.port} answers", step=0.2)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def settings_for(dev_env, tmp_path: Path, **overrides) -> Settings:
    values = {
        "home": tmp_path / "home",
        "temporal_address": dev_env.client.service_client.config.target_host,
        "task_queue": f"agentgate-fault-{uuid.uuid4().hex[:8]}",
        "host_id": f"host-{uuid.uuid4().hex[:6]}",
        "agent_grace_seconds": 2,
        "heartbeat_seconds": 1,
        # Trusted local use: these agents report host PIDs through host files, which a sandbox hides.
        "sandbox_default_provider": "none",
    }
    return Settings(**(values | overrides))


# -- a full disk ------------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (a real ENOSPC) when this process may mount one; else skip with the reason."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root (the /dev/full stream test covers the stream without it)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_stream_into_a_full_device_keeps_going_and_counts_once(caplog):
    """/dev/full answers every write with ENOSPC: no root needed to see what a full disk does to a stream."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    from agentgate.artifacts import ArtifactStream

    before = metrics.PERSIST_FAILURES._value.get()
    caplog.set_level(logging.ERROR, logger="agentgate.artifacts")
    with ArtifactStream("/dev/full") as stream:
        for _ in range(100):
            assert stream.write(b"x" * 1000 + b"\n") == 1001  # the caller (the agent's pump) never sees the error
            stream.flush()
    assert stream.failed is not None and "No space left" in str(stream.failed)
    assert stream.dropped_bytes >= 99 * 1001
    assert metrics.PERSIST_FAILURES._value.get() - before == 1  # one failure per stream, not one per line
    assert any("bytes of output were not kept" in r.getMessage() for r in caplog.records)


# The agent fills the artifact store with its output (1 MiB on stdout, 4x the disk), then does its work.
FLOOD_AGENT = (
    f"{sys.executable} -c \"import sys; [sys.stdout.write('x' * 1023 + chr(10)) for _ in range(1024)]\"; "
    "echo done > done.txt; echo finished"
)


async def test_a_full_disk_does_not_stop_the_run_and_is_counted(dev_env, tmp_path, full_disk, sample_repo, caplog):
    settings = settings_for(dev_env, tmp_path, artifact_dir=full_disk)
    order = make_order(sample_repo, agent=FLOOD_AGENT, gate="test -f done.txt", max_iterations=1)
    before = metrics.PERSIST_FAILURES._value.get()
    caplog.set_level(logging.ERROR, logger="agentgate.artifacts")
    async with running_worker(dev_env, settings):
        outcome = await asyncio.wait_for(
            dev_env.client.execute_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue),
            timeout=WAIT,
        )
    assert outcome.result == "passed", (outcome.error, outcome.warnings)
    # The branch was delivered: the work is not lost because its records could not all be kept.
    branch = subprocess.check_output(["git", "-C", str(sample_repo), "branch", "--list", f"agentgate/{order.id}"])
    assert branch.strip()
    failed = metrics.PERSIST_FAILURES._value.get() - before
    logged = [r for r in caplog.records if "artifact write failed" in r.getMessage()]
    assert failed >= 1 and len(logged) >= 1, (failed, [r.getMessage() for r in caplog.records])
    assert any("No space left on device" in r.getMessage() for r in logged)
    assert all(getattr(r, "run_id", None) in (outcome.run_id, None) for r in logged)


def fill(mount: Path) -> None:
    """Write a filler file until the device answers ENOSPC: nothing more fits from here on."""
    with contextlib.suppress(OSError), open(mount / "filler", "wb") as fh:  # closing fails too: its buffer is full
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    with pytest.raises(OSError, match="No space left"):
        with open(mount / "probe", "wb") as fh:
            fh.write(b"x" * 8192)
            fh.flush()


# Copies what it is given to read back into the workspace, so the test sees what the agent saw; finishes the
# work only once it has read feedback (iteration 2), so the run passes only if the feedback reached it.
READ_BACK_AGENT = (
    'cat "$AGENTGATE_PROMPT_FILE" > "prompt-seen-$AGENTGATE_ITERATION.txt"; '
    'if [ -n "$AGENTGATE_FEEDBACK_FILE" ]; then cp "$AGENTGATE_FEEDBACK_FILE" feedback-seen.md; echo ok > done.txt; fi'
)


async def test_a_store_full_before_the_run_still_passes_with_prompt_and_feedback(
    dev_env, tmp_path, full_disk, sample_repo, caplog
):
    """Full before the first byte: work-order.json, prompt-N.md and feedback-N.md, which later phases and the
    agent read back, go to the spill folder; each failed write is counted; the run needs two iterations."""
    fill(full_disk)
    settings = settings_for(dev_env, tmp_path, artifact_dir=full_disk)
    order = make_order(sample_repo, agent=READ_BACK_AGENT, gate="test -f done.txt", max_iterations=2)
    before = metrics.PERSIST_FAILURES._value.get()
    caplog.set_level(logging.WARNING, logger="agentgate.artifacts")
    async with running_worker(dev_env, settings):
        outcome = await asyncio.wait_for(
            dev_env.client.execute_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue),
            timeout=WAIT,
        )
    assert outcome.result == "passed" and outcome.iterations == 2, (outcome.error, outcome.warnings)
    branch = f"agentgate/{order.id}"

    def shown(name: str) -> str:
        return subprocess.check_output(["git", "-C", str(sample_repo), "show", f"{branch}:{name}"], text=True)

    # The agent read its prompt in both iterations and iteration 1's feedback (naming the failed gate) in the 2nd.
    assert shown("prompt-seen-1.txt") == shown("prompt-seen-2.txt") == order.task_prompt
    assert "test -f done.txt" in shown("feedback-seen.md")
    # Nothing of that reached the full store; all of it is in this worker's spill folder, and every miss was counted.
    spill = settings.home_dir / "spill" / order.id / outcome.run_id
    assert sorted(p.name for p in spill.iterdir()) == ["feedback-1.md", "prompt-1.md", "prompt-2.md", "work-order.json"]
    assert json.loads((spill / "work-order.json").read_text())["id"] == order.id
    failed_refs = {getattr(r, "ref", None) for r in caplog.records if "artifact write failed" in r.getMessage()}
    assert {"work-order.json", "prompt-1.md", "prompt-2.md", "feedback-1.md"} <= failed_refs
    assert metrics.PERSIST_FAILURES._value.get() - before >= len(failed_refs)
    assert not (full_disk / order.id / outcome.run_id / "work-order.json").exists()


# -- an API restart under a live SSE client ----------------------------------------------------------------


class SseFrames:
    """A minimal Server-Sent Events reader: (id, event, data) per frame; comments (pings) are skipped."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, str, dict]] = []
        self._fields: dict[str, str] = {}

    def feed_line(self, line: str) -> tuple[int, str, dict] | None:
        if line == "":
            fields, self._fields = self._fields, {}
            if "data" not in fields:
                return None
            frame = (int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"]))
            self.frames.append(frame)
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        self._fields[name] = value[1:] if value.startswith(" ") else value
        return None

    @property
    def last_id(self) -> int | None:
        return self.frames[-1][0] if self.frames else None


async def follow_sse(url: str, frames: SseFrames, stop_after: int | None = None) -> bool:
    """Read the stream into `frames`; True when it ended after a terminal event, False when cut or stopped early."""
    headers = {} if frames.last_id is None else {"Last-Event-ID": str(frames.last_id)}
    got = 0
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as http:
            async with http.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    frame = frames.feed_line(line)
                    if frame is None:
                        continue
                    got += 1
                    if frame[1] in ("run_completed", "run_failed", "run_canceled"):
                        return True
                    if stop_after is not None and got >= stop_after:
                        return False
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
        return False
    return False


# 80 lines over ~8 s: the stream is live on both sides of the restart.
CHATTY_AGENT = 'for i in $(seq 1 80); do echo "line $i"; sleep 0.1; done'


async def test_sse_client_resumes_across_an_api_restart_without_loss_or_repeats(dev_env, tmp_path, sample_repo):
    settings = settings_for(dev_env, tmp_path)
    api = ApiProcess(settings, free_port(), tmp_path / "api.log")
    api.start()
    try:
        async with running_worker(dev_env, settings):
            await api.ready()
            body = {
                "task_prompt": "Talk for a while.",
                "workspace_source": {"type": "local", "path": str(sample_repo)},
                "agent": {"driver": "command", "command": CHATTY_AGENT},
                "gates": ["true"],
                "max_iterations": 1,
            }
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
                created = await http.post("/api/v1/work-orders", json=body)
            assert created.status_code == 201, created.text
            wo_id = created.json()["id"]
            url = f"{api.url}/api/v1/work-orders/{wo_id}/events"

            frames = SseFrames()
            # Follow the run live; once 10 of the agent's lines arrived, the API dies under the client.
            reader = asyncio.create_task(follow_sse(url, frames))
            await until(lambda: sum(1 for f in frames.frames if f[1] == "agent_output") >= 10, "10 lines live")
            api.kill(signal.SIGKILL)
            assert await asyncio.wait_for(reader, 30) is False  # the stream was cut, not ended
            cut_at = frames.last_id
            api.start()
            await api.ready()
            for _ in range(20):  # resume with Last-Event-ID (as an EventSource does) until the terminal event
                if await follow_sse(url, frames):
                    break
            else:
                raise AssertionError(f"no terminal event after 20 reconnects; last id {frames.last_id}")

            run_id = (
                created.headers.get("X-AgentGate-Run-Id")
                or (await dev_env.client.get_workflow_handle(wo_id).describe()).run_id
            )
        ids = [f[0] for f in frames.frames]
        assert ids == list(range(1, len(ids) + 1)), f"gap or repeat around {cut_at}: {ids}"
        # Exactly what the worker recorded, in order: nothing lost, nothing doubled.
        recorded = read_events(settings.runs_dir / wo_id / run_id / "events.jsonl")
        assert [(e.seq, e.type) for e in recorded] == [(f[0], f[1]) for f in frames.frames]
        lines = [f[2]["text"] for f in frames.frames if f[1] == "agent_output"]
        assert lines == [f"line {i}" for i in range(1, 81)]
        assert cut_at is not None and 10 <= sum(1 for f in frames.frames[:cut_at] if f[1] == "agent_output") < 80
    finally:
        api.stop()


# -- a corrupted store ------------------------------------------------------------------------------------


async def test_corrupt_run_json_is_quarantined_and_everything_else_stays_readable(dev_env, tmp_path, sample_repo):
    from tests.conftest import running_api

    settings = settings_for(dev_env, tmp_path)
    orders = [make_order(sample_repo, agent="echo working", gate="true", max_iterations=1) for _ in range(2)]
    async with running_worker(dev_env, settings):
        outcomes = [
            await asyncio.wait_for(
                dev_env.client.execute_workflow(WorkOrderWorkflow.run, o, id=o.id, task_queue=settings.task_queue),
                timeout=WAIT,
            )
            for o in orders
        ]
        # The worker keeps running (it answers the status query); the API starts after the damage.
        assert [o.result for o in outcomes] == ["passed", "passed"]
        store = ArtifactStore(settings.runs_dir)
        (a, b), (out_a, out_b) = orders, outcomes
        ctx_a = RunContext(work_order_id=a.id, run_id=out_a.run_id)
        ctx_b = RunContext(work_order_id=b.id, run_id=out_b.run_id)
        events_a = read_events(store.path(ctx_a, "events.jsonl"))
        events_b = read_events(store.path(ctx_b, "events.jsonl"))
        # A's run.json cut short (a disk that filled under another writer); a line in the middle of B's
        # events.jsonl overwritten with garbage, and a torn last line (a writer killed mid-line).
        store.path(ctx_a, "run.json").write_text('{"status": "succ')
        raw_b = store.path(ctx_b, "events.jsonl").read_bytes().split(b"\n")
        middle = len(raw_b) // 2
        garbled_seq = json.loads(raw_b[middle])["seq"]
        raw_b[middle] = b"\x00\xff{not json"
        damaged_b = b"\n".join(raw_b) + b'{"seq": 999, "type": "run_'
        store.path(ctx_b, "events.jsonl").write_bytes(damaged_b)
        quarantine = settings.runs_dir / QUARANTINE_DIR

        def copies(name: str) -> list[Path]:
            return [p for p in quarantine.rglob(f"{name}.*") if p.suffix != ".reason"] if quarantine.is_dir() else []

        # The API's start-up storage check quarantines the record and B's log; the service answers meanwhile.
        async with running_api(dev_env, settings) as http:
            await until(lambda: not store.path(ctx_a, "run.json").exists(), "run.json of A quarantined")
            [moved] = copies("run.json")
            assert moved.read_text() == '{"status": "succ'
            reason = Path(f"{moved}.reason").read_text()
            assert "not valid JSON" in reason and f"{a.id}/{out_a.run_id}/run.json" in reason

            # B's events.jsonl: the file as found is in the quarantine, with the bad lines and why.
            [copied] = await until(lambda: copies("events.jsonl"), "B's events.jsonl copied to the quarantine")
            assert copied.read_bytes() == damaged_b and copied.parent == quarantine / b.id / out_b.run_id
            reason = Path(f"{copied}.reason").read_text()
            assert f"line {middle + 1} (byte " in reason and f"line {len(raw_b)} (byte " in reason
            assert "not UTF-8" in reason and "no newline at the end" not in reason  # the torn tail is not JSON
            assert "the api start-up storage check" in reason

            # Everything else of A: its status (Temporal), its event stream, every other file.
            status = (await http.get(f"/api/v1/work-orders/{a.id}")).json()
            assert status["result"] == "passed"
            replay = await http.get(f"/api/v1/work-orders/{a.id}/events", params={"follow": "false"})
            frames = SseFrames()
            for line in replay.text.split("\n"):
                frames.feed_line(line)
            assert [f[0] for f in frames.frames] == [e.seq for e in events_a]
            listing = (await http.get(f"/api/v1/work-orders/{a.id}/artifacts")).json()["items"]
            names = {item["name"] for item in listing}
            assert "run.json" not in names and {"work-order.json", "agent-1.json", "events.jsonl"} <= names
            for item in listing:
                assert (await http.get(item["url"])).status_code == 200, item

            # B's live file now holds only decodable lines: every event but the garbled one, in order, seq
            # unchanged, then the line that keeps the torn tail's number used (its 999 is implausible: dropped).
            last = events_b[-1].seq
            recorded = read_events(store.path(ctx_b, "events.jsonl"))
            assert [e.seq for e in recorded] == [e.seq for e in events_b if e.seq != garbled_seq] + [last + 1]
            assert recorded[-1].type == "events_quarantined"
            replay = await http.get(f"/api/v1/work-orders/{b.id}/events", params={"follow": "false"})
            frames = SseFrames()
            for line in replay.text.split("\n"):
                frames.feed_line(line)
            assert [f[0] for f in frames.frames] == [e.seq for e in recorded]
            # A client resuming from before the garbled line gets the rest once, up to the terminal event.
            resumed = SseFrames()
            resumed.frames.append((garbled_seq - 1, "resume point", {}))
            assert await follow_sse(str(http.base_url.join(f"/api/v1/work-orders/{b.id}/events")), resumed)
            assert [f[0] for f in resumed.frames[1:]] == [e.seq for e in events_b if e.seq >= garbled_seq + 1]
            assert (
                json.loads((await http.get(f"/api/v1/work-orders/{b.id}/artifacts/run.json")).text)["result"]
                == "passed"
            )
    # A second check finds nothing new: the quarantine folder is not re-judged, B's events.jsonl is clean now.
    again = validate_store(settings.runs_dir, fix=True)
    assert not again.corrupt and again.in_quarantine == 2


# -- cancel and kill storms (small here; 50 orders in tests/test_chaos.py) --------------------------------


def storm_agent(pids: PidLog) -> str:
    """Records its shell's PID and a background child's PID (a grandchild of the worker), then waits."""
    child = f'sleep 600 & echo "$! $(cut -d" " -f22 /proc/$!/stat)" >> {pids.dir}/"$AGENTGATE_WORK_ORDER_ID"'
    return f"{pids.record_command()}; {child}; wait"


async def cancel_and_kill_storm(dev_env, tmp_path: Path, repo: Path, cancel: int, kill: int) -> None:
    """Start `cancel + kill` orders, wait until every agent runs, then cancel and kill them all at once."""
    from tests.conftest import running_api

    total = cancel + kill
    settings = settings_for(dev_env, tmp_path, capacity=total, max_concurrent_agents=total,
                            max_concurrent_activities=total + 10)  # fmt: skip
    pids = PidLog(tmp_path)
    body = {
        "task_prompt": "Run until stopped.",
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": storm_agent(pids)},
        "gates": ["true"],
        "max_iterations": 1,
    }
    try:
        async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
            ids = []
            for _ in range(total):
                created = await http.post("/api/v1/work-orders", json=body)
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            # Both PIDs of every agent recorded: all of them are running at once.
            await until(lambda: len(pids.entries()) == 2 * total, f"{total} agents running", timeout=WAIT * 2)
            assert pids.orders() == set(ids) and len(pids.alive()) == 2 * total

            to_cancel, to_kill = ids[:cancel], ids[cancel:]
            answers = await asyncio.gather(
                *(http.delete(f"/api/v1/work-orders/{wo}") for wo in to_cancel),
                *(http.post(f"/api/v1/work-orders/{wo}/kill", json={"reason": "storm"}) for wo in to_kill),
            )
            assert [r.status_code for r in answers] == [202] * total, [r.text for r in answers if r.status_code != 202]

            async def closed(wo: str) -> None:  # a long poll on Temporal: no status query per order and poll
                with contextlib.suppress(WorkflowFailureError):
                    await dev_env.client.get_workflow_handle(wo).result()

            await asyncio.wait_for(asyncio.gather(*(closed(wo) for wo in ids)), timeout=WAIT * 2)
            # Killed runs are terminated in Temporal: their agents stop when the next heartbeat finds them gone.
            await until(lambda: not pids.alive(), f"no agent process left; alive: {pids.alive()}", timeout=WAIT)
            states = await asyncio.gather(*(http.get(f"/api/v1/work-orders/{wo}") for wo in ids))
            assert [s.json()["status"] for s in states] == ["canceled"] * cancel + ["failed"] * kill
    finally:
        for pid in pids.alive():  # only if the test failed: never leave our own processes behind
            os.kill(pid, signal.SIGKILL)


async def test_a_small_cancel_and_kill_storm_leaves_no_agent_process(dev_env, tmp_path, sample_repo):
    await cancel_and_kill_storm(dev_env, tmp_path, sample_repo, cancel=6, kill=2)
