"""The real Claude Code, Codex and OpenCode CLIs (from npm, see scripts/install-agent-clis.sh).

They accept the command lines our drivers build, and a run without credentials ends as a
classified error with the CLI's own message, in bounded time. Skipped with a reason when
`.agent-clis/` is absent. No network beyond 127.0.0.1: a run without credentials either
fails before any request (claude: "Not logged in"; opencode: the provider's models do not
exist without its key) or talks to a local stub that answers like the provider's API does
(codex has no pre-flight check; with no network at all it waits for one forever, which the
driver stops). The real OpenCode stream is also compared with the fake's, key by key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest

from activities.build import classify_outcome
from agentgate.agents import get_driver
from agentgate.agents.base import AgentRequest
from agentgate.ids import new_work_order_id
from agentgate.models import ErrorType, WorkOrder
from agentgate.process import run_streaming
from agentgate.sandbox.agent_phase import wrap_agent

BIN = Path(__file__).resolve().parent.parent / ".agent-clis" / "node_modules" / ".bin"
CLAUDE, CODEX, OPENCODE = BIN / "claude", BIN / "codex", BIN / "opencode"
FAKE_OPENCODE = Path(__file__).resolve().parent / "fakes" / "opencode_cli" / "opencode"
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
        sandbox=options.pop("sandbox", None),
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


async def _run_cli(driver_name: str, order: WorkOrder, repo: Path, tmp_path: Path, timeout: float = 60, **kw):
    """The driver's invocation under run_streaming, as the build activity runs it (parser, stop_reason), inside
    the worker's default sandbox: offline but for the provider's API and the configured (stub) base URL, with a
    private HOME per run (kept across the iterations of one run, as the build activity keeps it)."""
    driver = get_driver(driver_name)
    inv = driver.build_invocation(_request(order, repo, **kw))
    parser = driver.new_parser()
    tmp_path.mkdir(parents=True, exist_ok=True)
    wrapped = wrap_agent(inv.argv, driver=driver_name, workspace=repo, env=inv.env, order_policy=order.sandbox,
                         run_dir=repo.parent, session_home=repo.parent / "session-home",
                         options=order.agent.options)  # fmt: skip
    try:
        outcome = await run_streaming(
            wrapped.argv, cwd=repo, env=wrapped.env, stdout_path=tmp_path / "out.log",
            stderr_path=tmp_path / "err.log", on_line=parser.feed, timeout_seconds=timeout, idle_timeout_seconds=45,
            grace_seconds=2, stdin_data=inv.stdin, should_stop=parser.stop_reason,
        )  # fmt: skip
    finally:
        wrapped.cleanup()
    parsed = parser.finish()
    return outcome, parsed, classify_outcome(outcome, parsed, 1, (tmp_path / "err.log").read_text())


async def _run_claude(order: WorkOrder, repo: Path, tmp_path: Path):
    return await _run_cli("claude-code", order, repo, tmp_path)


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


# -- codex without credentials -------------------------------------------------------------


class _OpenAIStub(BaseHTTPRequestHandler):
    """Answers every request like api.openai.com answers one without a key."""

    protocol_version = "HTTP/1.1"
    body = {"error": {"message": "Missing bearer or basic authentication in header", "type": "invalid_request_error",
                      "param": None, "code": None}}  # fmt: skip

    def do_POST(self):  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(self.body).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _codex_isolated(monkeypatch, tmp_path: Path) -> None:
    _isolated_env(monkeypatch, tmp_path)
    for var in ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.skipif(not CODEX.exists(), reason="codex CLI not installed")
async def test_codex_without_credentials_and_network_is_stopped_and_classified(sample_repo, tmp_path, monkeypatch):
    """No key and no network (sandbox network `none`: not even the proxy, whose 502 codex would give up on):
    codex would print "waiting for network" forever; the driver stops it."""
    _codex_isolated(monkeypatch, tmp_path)
    base = f"http://127.0.0.1:{_closed_port()}/v1"  # as unreachable as api.openai.com is from here, on any machine
    order = _order(sample_repo, "codex", config={"openai_base_url": base}, sandbox={"network": "none"})
    outcome, parsed, (error, found) = await _run_cli("codex", order, sample_repo, tmp_path, timeout=150)
    out = (tmp_path / "out.log").read_text()
    assert outcome.stopped and not outcome.timed_out, out[-2000:]
    assert outcome.survivors == [] and parsed.session_id and parsed.unparsed_lines == 0
    assert error is not None and error.type == ErrorType.AGENT_CRASH
    assert (found.reason, found.retryable) == ("connection", True)
    assert "Reconnecting... waiting for network" in error.message  # the CLI's own words


@pytest.mark.skipif(not CODEX.exists(), reason="codex CLI not installed")
async def test_codex_without_credentials_is_a_classified_auth_error(sample_repo, tmp_path, monkeypatch):
    """The API reachable (a local stub answering like OpenAI's): codex reports the 401 and exits."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _codex_isolated(monkeypatch, tmp_path)
        order = _order(sample_repo, "codex", config={"openai_base_url": f"http://127.0.0.1:{server.server_port}/v1"})
        outcome, parsed, (error, found) = await _run_cli("codex", order, sample_repo, tmp_path, timeout=150)
    finally:
        server.shutdown()
    assert not outcome.timed_out and outcome.stopped is None and outcome.exit_code == 1
    assert error is not None and error.type == ErrorType.AGENT_AUTH, (tmp_path / "out.log").read_text()[-2000:]
    assert not found.retryable and "401 Unauthorized: Missing bearer" in error.message
    assert parsed.error_message in error.message


# -- opencode ------------------------------------------------------------------------------

OC_MODEL = "anthropic/claude-sonnet-4-5"
needs_opencode = pytest.mark.skipif(not OPENCODE.exists(), reason="opencode CLI not installed")


@needs_opencode
def test_opencode_help_lists_every_flag_the_driver_uses(sample_repo):
    order = _order(sample_repo, "opencode", model=OC_MODEL, agent="build", variant="high", auto_approve=True)
    argv = get_driver("opencode").build_invocation(_request(order, sample_repo, iteration=2, session_id="ses_x")).argv
    text = _help(str(OPENCODE), "run", "--help")
    missing = [f for f in _flags(argv) if f not in text]
    assert not missing, f"opencode run --help does not list {missing}"
    assert "--session" in argv and "--print-logs" in argv


def _opencode_isolated(monkeypatch, tmp_path: Path) -> None:
    _isolated_env(monkeypatch, tmp_path)
    for var in ("OPENAI_API_KEY", "OPENCODE_CONFIG", "OPENCODE_CONFIG_CONTENT", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)


@needs_opencode
async def test_opencode_without_credentials_names_the_missing_provider(sample_repo, tmp_path, monkeypatch):
    _opencode_isolated(monkeypatch, tmp_path)
    order = _order(sample_repo, "opencode", model=OC_MODEL)
    outcome, parsed, (error, found) = await _run_cli("opencode", order, sample_repo, tmp_path, timeout=120)
    assert not outcome.timed_out and outcome.exit_code == 1 and parsed.session_id.startswith("ses_")
    assert parsed.error_kind == "ProviderModelNotFoundError", (tmp_path / "err.log").read_text()[-2000:]
    assert (error.type, found.reason, found.retryable) == (ErrorType.AGENT_CRASH, "model_not_found", False)
    assert f"Model not found: {OC_MODEL}" in error.message and "env_passthrough" in error.message


def _sse(handler: BaseHTTPRequestHandler, blocks: list[dict], stop: str, usage: dict) -> None:
    """One Anthropic Messages API response, streamed as the API streams it."""
    events = [
        {
            "type": "message_start",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": 1},
            },
        }
    ]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": f"toolu_01{uuid.uuid4().hex[:22]}", "name": block["name"], "input": {}}
            events.append({"type": "content_block_start", "index": i, "content_block": start})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append({"type": "content_block_delta", "index": i, "delta": delta})
        events.append({"type": "content_block_stop", "index": i})
    events += [{"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage.get("output_tokens", 50)}}, {"type": "message_stop"}]  # fmt: skip
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.end_headers()
    for event in events:
        handler.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    handler.wfile.flush()


class _AnthropicScript(BaseHTTPRequestHandler):
    """A scripted model: read mathlib.py, edit it, run the tests, report — one step per request."""

    workspace = ""
    status = 200

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if self.status != 200:
            error = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            data = json.dumps(error).encode()
            self.send_response(self.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if not body.get("tools"):  # OpenCode's title request
            return _sse(self, [{"type": "text", "text": "Implement add"}], "end_turn", {"input_tokens": 40})
        done = sum(1 for m in body.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), list)
                   for c in m["content"] if c.get("type") == "tool_result")  # fmt: skip
        path = str(Path(self.workspace) / "mathlib.py")
        usage = {"input_tokens": 1187, "cache_creation_input_tokens": 9876 if done == 0 else 0,
                 "cache_read_input_tokens": 0 if done == 0 else 9876, "output_tokens": 96}  # fmt: skip
        steps = [
            [{"type": "text", "text": "I'll read mathlib.py first."}, {"type": "tool", "name": "read",
                                                                      "input": {"filePath": path}}],
            [{"type": "tool", "name": "edit", "input": {"filePath": path,
              "oldString": 'raise NotImplementedError("add")', "newString": "return a + b"}}],
            [{"type": "tool", "name": "bash", "input": {"command": "python3 -m unittest test_mathlib",
                                                        "description": "Run the unit tests"}}],
        ]  # fmt: skip
        if done < len(steps):
            return _sse(self, steps[done], "tool_use", usage)
        return _sse(self, [{"type": "text", "text": "Implemented `add`."}], "end_turn", usage)

    def log_message(self, *args):
        pass


def _serve(handler: type) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _opencode_with_stub(monkeypatch, tmp_path: Path, port: int) -> list[str]:
    _opencode_isolated(monkeypatch, tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-invalid-test-key")
    config = {"provider": {"anthropic": {"options": {"baseURL": f"http://127.0.0.1:{port}/v1"}}}}
    monkeypatch.setenv("OPENCODE_CONFIG_CONTENT", json.dumps(config))
    return ["ANTHROPIC_API_KEY", "OPENCODE_CONFIG_CONTENT"]


@needs_opencode
async def test_opencode_api_auth_error_is_classified(sample_repo, tmp_path, monkeypatch):
    server = _serve(type("Stub", (_AnthropicScript,), {"status": 401}))
    try:
        names = _opencode_with_stub(monkeypatch, tmp_path, server.server_port)
        order = _order(sample_repo, "opencode", model=OC_MODEL, env_passthrough=names)
        outcome, parsed, (error, found) = await _run_cli("opencode", order, sample_repo, tmp_path, timeout=120)
    finally:
        server.shutdown()
    assert outcome.exit_code == 1 and parsed.api_error_status == 401 and parsed.error_kind == "APIError"
    assert error.type == ErrorType.AGENT_AUTH and not found.retryable and "invalid x-api-key" in error.message


def _shape(value, depth: int = 0):
    """The keys of a JSON object, nested (not the values): what a parser depends on."""
    if isinstance(value, dict) and depth < 3:
        return {k: _shape(v, depth + 1) for k, v in value.items() if k not in ("metadata", "output", "text")}
    return type(value).__name__ if value is not None else "null"


@needs_opencode
async def test_opencode_real_stream_matches_the_fake(sample_repo, tmp_path, monkeypatch):
    """The real CLI against a scripted local model, then the fake on a fresh copy: same events, same shapes."""
    handler = type("Stub", (_AnthropicScript,), {"workspace": str(sample_repo)})
    server = _serve(handler)
    try:
        names = _opencode_with_stub(monkeypatch, tmp_path, server.server_port)
        order = _order(sample_repo, "opencode", model=OC_MODEL, env_passthrough=names)
        outcome, real, (error, _) = await _run_cli("opencode", order, sample_repo, tmp_path, timeout=120)
        assert error is None and outcome.exit_code == 0, (tmp_path / "err.log").read_text()[-2000:]
        real_lines = [json.loads(x) for x in (tmp_path / "out.log").read_text().splitlines()]
        # The session continues with --session, as iteration 2 does.
        again, resumed, _ = await _run_cli("opencode", order, sample_repo, tmp_path / "2", timeout=120, iteration=2,
                                           session_id=real.session_id)  # fmt: skip
    finally:
        server.shutdown()
    assert again.exit_code == 0 and resumed.session_id == real.session_id
    assert "return a + b" in (sample_repo / "mathlib.py").read_text()  # the real CLI ran the edit tool
    assert [t.name for t in real.tool_calls] == ["read", "edit", "bash"] and real.unparsed_lines == 0
    assert real.turns == 4 and real.tokens.cache_read > 0 and real.cost_usd > 0 and real.tool_calls[2].is_error

    fake_repo = tmp_path / "fake-copy"
    subprocess.run(["git", "clone", "-q", str(sample_repo), str(fake_repo)], check=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "ANTHROPIC_API_KEY": "k"}
    fake = subprocess.run([str(FAKE_OPENCODE), "run", "--format", "json", "--model", OC_MODEL], cwd=fake_repo,
                          input=b"Implement add", capture_output=True, env=env, check=True)  # fmt: skip
    fake_lines = [json.loads(x) for x in fake.stdout.decode().splitlines()]

    def shapes(lines):
        found = {}
        for line in lines:
            key = (line["type"], line.get("part", {}).get("tool"))
            found.setdefault(key, _shape(line))
        return found

    assert [x["type"] for x in fake_lines] == [x["type"] for x in real_lines]
    assert shapes(fake_lines) == shapes(real_lines)
    bash_real = next(x for x in real_lines if x.get("part", {}).get("tool") == "bash")["part"]["state"]["metadata"]
    bash_fake = next(x for x in fake_lines if x.get("part", {}).get("tool") == "bash")["part"]["state"]["metadata"]
    assert set(bash_fake) == set(bash_real) and bash_real["exit"] == 1 == bash_fake["exit"]
