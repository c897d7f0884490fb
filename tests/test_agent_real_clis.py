"""The real Claude Code and Codex CLIs (from npm, see scripts/install-agent-clis.sh) accept our command lines.

Skipped with a reason when `.agent-clis/` is absent. No network beyond 127.0.0.1: the
no-credentials run fails before any request, and the API-error runs talk to a local stub
that answers like the Anthropic API does, so the CLI's own error output is what we classify.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from activities.build import classify_outcome
from agentgate.agents import get_driver
from agentgate.agents.base import AgentRequest
from agentgate.ids import new_work_order_id
from agentgate.models import ErrorType, WorkOrder
from agentgate.process import run_streaming

BIN = Path(__file__).resolve().parent.parent / ".agent-clis" / "node_modules" / ".bin"
CLAUDE, CODEX = BIN / "claude", BIN / "codex"
# Accepted by the CLI but hidden from its --help (claude 2.1.x); the credential-less run
# below passes them and checks that the CLI does not reject them.
CLAUDE_HIDDEN_FLAGS = {"--max-turns"}
pytestmark = pytest.mark.skipif(
    not CLAUDE.exists(), reason="real agent CLIs not installed: run scripts/install-agent-clis.sh (needs npm)"
)


def _order(repo: Path, driver: str, **options) -> WorkOrder:
    return WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt="Say hello.",
        workspace_source={"type": "local", "path": str(repo)},
        agent={"driver": driver, "model": options.pop("model", None), "options": options},
        gates=["true"],
    )


def _request(order: WorkOrder, repo: Path, **kw) -> AgentRequest:
    prompt = repo.parent / "prompt.md"
    prompt.write_text(order.task_prompt)
    return AgentRequest(
        work_order=order, workspace=str(repo), iteration=kw.pop("iteration", 1), prompt=order.task_prompt,
        prompt_file=str(prompt), feedback_file=None, **kw,
    )  # fmt: skip


def _help(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    return proc.stdout + proc.stderr


def _flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("-") and a != "-"}


def test_claude_help_lists_every_flag_the_driver_uses(sample_repo):
    order = _order(sample_repo, "claude-code", model="sonnet", max_turns=5, allowed_tools=["Read"],
                   disallowed_tools=["WebFetch"], permission_mode="acceptEdits")  # fmt: skip
    argv = get_driver("claude-code").build_invocation(_request(order, sample_repo, iteration=2, session_id="s")).argv
    text = _help(str(CLAUDE), "--help")
    missing = [f for f in _flags(argv) if f not in text and f not in CLAUDE_HIDDEN_FLAGS]
    assert not missing, f"claude --help does not list {missing}"
    assert "--resume" in argv and "--max-turns" in argv


@pytest.mark.skipif(not CODEX.exists(), reason="codex CLI not installed")
def test_codex_help_lists_every_flag_the_driver_uses(sample_repo):
    order = _order(sample_repo, "codex", model="gpt-5-codex", config={"model_reasoning_effort": "low"})
    fresh = get_driver("codex").build_invocation(_request(order, sample_repo)).argv
    resumed = get_driver("codex").build_invocation(_request(order, sample_repo, iteration=2, session_id="t")).argv
    exec_help = _help(str(CODEX), "exec", "--help")
    resume_help = _help(str(CODEX), "exec", "resume", "--help")
    assert not [f for f in _flags(fresh) if f not in exec_help], exec_help[-500:]
    assert not [f for f in _flags(resumed) if f not in resume_help], resume_help[-500:]


def _isolated_env(monkeypatch, tmp_path: Path) -> None:
    """No credentials anywhere: an empty HOME, no API keys, the real CLI first on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")


async def _run_claude(order: WorkOrder, repo: Path, tmp_path: Path):
    driver = get_driver("claude-code")
    inv = driver.build_invocation(_request(order, repo))
    parser = driver.new_parser()
    outcome = await run_streaming(
        inv.argv, cwd=repo, env=inv.env, stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log",
        on_line=parser.feed, timeout_seconds=60, idle_timeout_seconds=45, grace_seconds=2, stdin_data=inv.stdin,
    )  # fmt: skip
    parsed = parser.finish()
    return outcome, parsed, classify_outcome(outcome, parsed, 1, (tmp_path / "err.log").read_text())


async def test_claude_without_credentials_is_a_classified_auth_error(sample_repo, tmp_path, monkeypatch):
    _isolated_env(monkeypatch, tmp_path)
    order = _order(sample_repo, "claude-code", max_turns=3, allowed_tools=["Read"], disallowed_tools=["WebFetch"],
                   model="sonnet", env_passthrough=["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"])  # fmt: skip
    outcome, parsed, (error, found) = await _run_claude(order, sample_repo, tmp_path)
    stderr = (tmp_path / "err.log").read_text()
    assert not any(f"'{flag}'" in stderr for flag in CLAUDE_HIDDEN_FLAGS), stderr  # hidden flags are accepted
    assert not outcome.timed_out and not outcome.stalled
    assert parsed.session_id and parsed.is_error and parsed.unparsed_lines == 0
    assert error is not None and error.type == ErrorType.AGENT_AUTH, (error, (tmp_path / "out.log").read_text())
    assert found is not None and not found.retryable
    assert parsed.error_message and parsed.error_message in error.message  # the CLI's own words, e.g. "Not logged in"


class _AnthropicStub(BaseHTTPRequestHandler):
    status = 429
    bodies = {
        401: {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        429: {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has "
                                                                                "exceeded your per-minute rate limit"}},
        529: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    }  # fmt: skip

    def do_POST(self):  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(self.bodies[self.status]).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("retry-after", "0")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [(401, ErrorType.AGENT_AUTH, False), (429, ErrorType.AGENT_CRASH, True), (529, ErrorType.AGENT_CRASH, True)],
)
async def test_claude_api_errors_are_classified(sample_repo, tmp_path, monkeypatch, status, error_type, retryable):
    handler = type("Stub", (_AnthropicStub,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _isolated_env(monkeypatch, tmp_path)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-invalid-test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "1")
        names = ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]  # fmt: skip
        order = _order(sample_repo, "claude-code", env_passthrough=names, auth="api_key")
        outcome, parsed, (error, found) = await _run_claude(order, sample_repo, tmp_path)
    finally:
        server.shutdown()
    assert not outcome.timed_out and not outcome.stalled
    assert error is not None and error.type == error_type, (error, (tmp_path / "out.log").read_text()[-2000:])
    assert found.retryable is retryable
    assert parsed.api_error_status in (status, None) and parsed.error_message in error.message
