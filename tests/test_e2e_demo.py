"""End to end, as a newcomer runs it: `agentgate demo` starts the embedded stack (Temporal dev
server from the wheel with its SQLite file and Web UI, a worker, the API), drives the sample
work order to `passed` in 2 iterations; then the CLI is used against that stack and `agentgate
down` stops it. Everything is real: processes, ports on 127.0.0.1, git, HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

AGENTGATE = [sys.executable, "-m", "agentgate.cli"]


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e-home")
    env = dict(os.environ)
    env.update(
        AGENTGATE_HOME=str(home),
        AGENTGATE_TEMPORAL_PORT=str(free_port()),
        AGENTGATE_UI_PORT=str(free_port()),
        AGENTGATE_API_PORT=str(free_port()),
        AGENTGATE_HOST_ID="e2e-host",
        AGENTGATE_METRICS_PORT=str(free_port()),
        COLUMNS="200",
    )
    yield env
    info_file = home / "agentgate-up.json"
    if info_file.exists():  # the test failed before `down`: stop our stack by its PID
        pid = json.loads(info_file.read_text())["pid"]
        subprocess.run([*AGENTGATE, "down"], env=env, timeout=90, check=False)
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _cli(env, *args, timeout=180):
    return subprocess.run([*AGENTGATE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_then_cli_then_down(stack_env):
    home = Path(stack_env["AGENTGATE_HOME"])
    demo = _cli(stack_env, "demo", "--json")
    assert demo.returncode == 0, demo.stderr[-3000:] + demo.stdout[-3000:]
    result = json.loads(demo.stdout.strip().splitlines()[-1])
    assert result["result"] == "passed" and result["iterations"] == 2 and result["stack_started"] is True
    assert "iteration 2" in demo.stderr  # progress was shown

    # The branch, one commit per iteration, landed in the sample repository without touching its checkout.
    repo = Path(result["source_repository"])
    log = subprocess.check_output(["git", "-C", str(repo), "log", "--format=%s", result["branch"]], text=True)
    assert log.splitlines()[:3] == ["agentgate: iteration 2", "agentgate: iteration 1", "sample: failing tests"]
    assert subprocess.check_output(["git", "-C", str(repo), "branch", "--show-current"], text=True).strip() == "main"
    assert subprocess.check_output(["git", "-C", str(repo), "status", "--porcelain"], text=True) == ""

    # Every artifact is there and parses; iteration 1's verification failed with the gate's real output.
    run_dir = Path(result["links"]["artifacts"])
    assert run_dir.parent.parent == home / "runs"
    for name in ("run.json", "work-order.json", "agent-1.json", "agent-2.json", "verification-1.json",
                 "verification-2.json", "iteration-1.json", "iteration-2.json"):  # fmt: skip
        json.loads((run_dir / name).read_text())
    for name in ("patch-1.diff", "patch-2.diff", "feedback-1.md", "agent-1.stdout.log", "events.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    v1 = json.loads((run_dir / "verification-1.json").read_text())
    assert v1["passed"] is False
    gate_output = (run_dir / v1["gates"][0]["output_file"]).read_text()
    assert "FAILED (errors=1)" in gate_output and "NotImplementedError: multiply" in gate_output
    assert json.loads((run_dir / "verification-2.json").read_text())["passed"] is True
    assert (home / "temporal.db").exists()

    # Finished runs are kept for AGENTGATE_RETENTION_DAYS (30), not the dev server's own 1 day.
    from agentgate.embedded import temporal_binary

    described = subprocess.run(
        [temporal_binary(), "operator", "namespace", "describe", "--namespace", "default", "-o", "json",
         "--address", f"127.0.0.1:{stack_env['AGENTGATE_TEMPORAL_PORT']}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert json.loads(described.stdout)["config"]["workflowExecutionRetentionTtl"] == f"{30 * 86400}s"

    # The Temporal Web UI of the embedded server answers at the printed URL.
    ui = result["links"]["temporal_ui"]
    assert ui.startswith(f"http://127.0.0.1:{stack_env['AGENTGATE_UI_PORT']}/namespaces/default/workflows/")
    with urllib.request.urlopen(f"http://127.0.0.1:{stack_env['AGENTGATE_UI_PORT']}/", timeout=10) as page:
        assert page.status == 200

    # Prometheus metrics on the API's /metrics and on the worker's metrics port, parsed by the official parser.
    from prometheus_client.parser import text_string_to_metric_families

    for url in (f"http://127.0.0.1:{stack_env['AGENTGATE_API_PORT']}/metrics",
                f"http://127.0.0.1:{stack_env['AGENTGATE_METRICS_PORT']}/metrics"):  # fmt: skip
        with urllib.request.urlopen(url, timeout=10) as page:
            families = {f.name: f for f in text_string_to_metric_families(page.read().decode())}
        completed = families["agentgate_runs_completed"].samples
        assert any(s.labels.get("result") == "passed" and s.value >= 1 for s in completed), completed
        assert families["agentgate_iterations"].samples[0].value >= 2

    # The CLI against the running stack: submit --wait --json, status, bad input.
    sub = _cli(stack_env, "submit", "--path", str(repo), "--prompt", "make the tests pass",
               "--agent", "command", "--agent-command", "echo nothing to do", "--gate", "exit 3",
               "--max-iterations", "2", "--wait", "--json")  # fmt: skip
    assert sub.returncode == 1, sub.stderr
    failed = json.loads(sub.stdout)
    assert failed["status"] == "failed" and failed["result"] == "failed_verification"
    assert failed["iterations"] == 2 and failed["error_type"] == "test_failed"
    status = _cli(stack_env, "status", failed["id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["result"] == "failed_verification"

    for args, text in (
        (["submit", "--path", str(home / "nope"), "--prompt", "x", "--agent-command", "true"], "no such directory"),
        (["submit", "--path", str(home), "--prompt", "x", "--agent-command", "true"], "not a git repository"),
        (["submit", "--path", str(repo), "--prompt", "x", "--agent", "robot"], "unknown agent 'robot'"),
        (["submit", "--path", str(repo), "--prompt", " ", "--agent-command", "true"], "must not be empty"),
    ):
        bad = _cli(stack_env, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert text in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr

    # A second demo reuses the running stack (idempotent), then `down` stops everything we started.
    again = _cli(stack_env, "demo", "--json")
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["stack_started"] is False
    pid = json.loads((home / "agentgate-up.json").read_text())["pid"]
    down = _cli(stack_env, "down", timeout=90)
    assert down.returncode == 0, down.stderr
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists()
    assert not (home / "agentgate-up.json").exists()
