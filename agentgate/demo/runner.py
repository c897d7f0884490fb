"""`agentgate demo`: the whole path once, on the embedded stack, with a deterministic agent.

Starts the stack in the background when it is not already running (it stays up so the
Temporal Web UI and the API can be explored; `agentgate down` stops it), creates a
sample repository whose tests fail, submits a work order through the HTTP API and
follows it to the end.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from agentgate.client import AgentGateClient, ApiRequestError
from agentgate.config import Settings
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT, create_sample_repo
from agentgate.embedded import resolve_endpoints

console = Console(stderr=True, highlight=False)


def _wait_ready(client: AgentGateClient, timeout: float, proc=None, log_path: Path | None = None) -> None:
    log_start = log_path.stat().st_size if log_path and log_path.exists() else 0
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and log_path.exists():
                with open(log_path, "rb") as fh:
                    fh.seek(log_start)
                    tail = fh.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the embedded stack exited with code {proc.returncode}:\n{tail}")
        try:
            client.ready()
            return
        except ApiRequestError as exc:
            last_error = exc.message
            time.sleep(0.3)
    raise RuntimeError(f"the embedded stack did not become ready in {timeout:.0f} s: {last_error}")


def run_demo(settings: Settings, as_json: bool = False) -> int:
    from agentgate.cli import _compact, _describe, _spawn_detached_stack, _wait

    settings = resolve_endpoints(settings)
    client = AgentGateClient(settings.api_url, api_key=settings.api_key)
    started_stack = False
    try:
        client.ready()
        console.print(f"using the AgentGate stack already running at {settings.api_url}")
    except ApiRequestError:
        console.print("starting the embedded stack (Temporal dev server, worker, API)…")
        proc = _spawn_detached_stack(settings)
        try:
            _wait_ready(client, 90, proc, settings.home_dir / "logs" / "up.log")
        except RuntimeError as exc:
            console.print(f"[red]error:[/] {exc}")
            return 3
        started_stack = True

    repo = settings.home_dir / "demo" / f"sample-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    create_sample_repo(repo)
    console.print(f"sample repository with a failing test: {repo}")
    body = {
        "task_prompt": TASK_PROMPT,
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": f"{sys.executable} -m agentgate.demo.agent"},
        "gates": [{"name": "unit tests", "command": GATE_COMMAND, "timeout_seconds": 120}],
        "max_iterations": 3,
        "labels": ["demo"],
    }
    try:
        created = client.submit(body)
    except ApiRequestError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        return 3
    console.print(f"submitted work order {created['id']}; following it:")
    outcome = _wait(client, created["id"], quiet=False)
    summary = _compact(outcome)
    summary["source_repository"] = str(repo)
    summary["stack_started"] = started_stack
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print(_describe(summary, settings))
        print(f"  inspect the result: git -C {repo} log --oneline {summary.get('branch')}")
        print("  the stack keeps running for you to explore; stop it with: agentgate down")
    client.close()
    return 0 if outcome.get("result") == "passed" else 1
