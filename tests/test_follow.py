"""`agentgate follow` and `submit --follow` as subprocesses against a real worker and the real API over HTTP.

The reconnect test puts a real TCP proxy between the CLI and the API and cuts every connection
mid-run (and refuses new ones for a moment): the CLI must resume with Last-Event-ID, with no
event repeated and none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.models import RunContext
from tests.conftest import DEMO_AGENT, free_port, running_api, running_worker

SLOW_AGENT = f"for i in 1 2 3 4 5 6; do echo step $i; sleep 0.3; done; {DEMO_AGENT}"
CLI = [sys.executable, "-m", "agentgate.cli"]


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 that can cut all its connections and refuse new ones for a while."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self, down_for: float) -> None:
        """Reset every open connection, refuse connections for `down_for` seconds, then accept again."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(down_for)
        await self.start()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()


def _port(http) -> int:
    return int(str(http.base_url).rstrip("/").rsplit(":", 1)[1])


async def _cli(*args: str, port: int, settings) -> asyncio.subprocess.Process:
    env = {**os.environ, "AGENTGATE_API_URL": f"http://127.0.0.1:{port}", "AGENTGATE_HOME": str(settings.home)}
    return await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def _submit(http, repo, agent: str = DEMO_AGENT, **extra) -> str:
    body = {"task_prompt": TASK_PROMPT, "workspace_source": {"type": "local", "path": str(repo)},
            "agent": {"driver": "command", "command": agent}, "gates": [GATE_COMMAND], **extra}  # fmt: skip
    created = await http.post("/api/v1/work-orders", json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _recorded(settings, wo_id: str, run_id: str) -> list[dict]:
    text = ArtifactStore(settings.runs_dir).read_text(RunContext(work_order_id=wo_id, run_id=run_id), "events.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_follow_json_resumes_after_the_connection_is_cut(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        proxy = await DroppingProxy(_port(http)).start()
        try:
            wo_id = await _submit(http, sample_repo, agent=SLOW_AGENT)
            proc = await _cli("follow", wo_id, "--json", port=proxy.port, settings=settings)
            assert proc.stdout is not None
            lines = []
            while len(lines) < 5:  # mid-run: the slow agent is still printing
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line, (await proc.stderr.read()).decode()
                lines.append(line)
            await proxy.cut(down_for=1.0)
            code, rest, err = await _finish(proc)
        finally:
            await proxy.stop()
        assert proxy.accepted >= 2, "the CLI connected again"

    events = [json.loads(line) for line in [*(x.decode() for x in lines), *rest.splitlines()] if line.strip()]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "no duplicate, no gap"
    assert events[-1]["type"] == "run_completed" and events[-1]["status"] == "succeeded"
    assert events == _recorded(settings, wo_id, events[0]["run_id"])
    assert "resuming after event" in err
    assert code == 0, err


async def test_submit_follow_human_view_and_exit_codes(dev_env, settings, sample_repo, tmp_path):
    from agentgate.demo.sample_repo import create_sample_repo

    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        port = _port(http)
        proc = await _cli(
            "submit", "--path", str(sample_repo), "--prompt", TASK_PROMPT, "--agent-command", DEMO_AGENT,
            "--gate", GATE_COMMAND, "--max-iterations", "3", "--follow", port=port, settings=settings,
        )  # fmt: skip
        code, out, err = await _finish(proc)
        assert code == 0, out + err
        lines = out.splitlines()
        assert lines[0].startswith("submitted wo_")
        assert any(line.startswith("iteration 1/3") for line in lines), out
        assert any(line.startswith("iteration 2/3") for line in lines), out
        assert any("✗" in line and "exit 1" in line and "gate-1-" in line for line in lines), out
        assert any(line.startswith("  │ demo-agent: iteration 1") for line in lines), out
        assert any(line.startswith("iteration 1/3 failed · decision continue") for line in lines), out
        assert lines[-1].startswith("■ succeeded: passed · 2 iterations"), out

        # A run that does not pass: exit 1, as with `submit --wait`.
        failing = await _submit(http, create_sample_repo(tmp_path / "again"), max_iterations=1)
        code, out, err = await _finish(await _cli("follow", failing, port=port, settings=settings))
        assert code == 1, out + err
        assert out.splitlines()[-1].startswith("■ failed"), out

        # Replaying a finished run from an event number prints only what follows it.
        code, out, _ = await _finish(await _cli("follow", failing, "--json", "--after", "3", port=port,
                                                settings=settings))  # fmt: skip
        assert code == 1 and json.loads(out.splitlines()[0])["seq"] == 4

        # Bad input and an unreachable API: one line on stderr, the documented codes.
        code, out, err = await _finish(await _cli("follow", "wo_0000000000nothere", port=port, settings=settings))
        assert code == 2 and "does not exist" in err and out == ""
    code, out, err = await _finish(await _cli("follow", failing, port=free_port(), settings=settings))
    assert code == 3 and "cannot reach" in err


async def test_follow_exits_4_when_the_run_is_canceled(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        wo_id = await _submit(http, sample_repo, agent="echo started; sleep 60")
        proc = await _cli("follow", wo_id, port=_port(http), settings=settings)
        assert proc.stdout is not None
        while b"started" not in (line := await asyncio.wait_for(proc.stdout.readline(), 60)):
            assert line, (await proc.stderr.read()).decode()
        assert (await http.delete(f"/api/v1/work-orders/{wo_id}")).status_code in (200, 202)
        code, out, err = await _finish(proc)
        assert code == 4, out + err
        assert out.splitlines()[-1].startswith("■ canceled"), out
