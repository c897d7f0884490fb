"""Agent drivers: real transcript formats parsed field by field, the error table row by row,
and each driver end to end through the workflow with a fake CLI that really edits files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentgate.agents import available_drivers, get_driver
from agentgate.agents.base import AgentRequest
from agentgate.agents.classify import RULES, classify
from agentgate.agents.claude_code import ClaudeStreamParser
from agentgate.agents.codex import CodexJsonParser
from agentgate.agents.opencode import OpenCodeJsonParser
from agentgate.agents.pricing import estimate_cost, price_for
from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.ids import new_work_order_id
from agentgate.models import ErrorType, RunContext, TokenUsage, WorkOrder
from agentgate.process import ProcessOutcome
from tests.conftest import running_worker
from workflows.work_order import WorkOrderWorkflow

FAKE_BIN = Path(__file__).parent / "fixtures" / "bin"


def order_for(repo: Path, driver: str, *, model: str | None = None, **options) -> WorkOrder:
    return WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt=TASK_PROMPT,
        workspace_source={"type": "local", "path": str(repo)},
        agent={"driver": driver, "model": model, "options": options},
        gates=[GATE_COMMAND],
        sandbox=log_sandbox(options.get("env_passthrough") or []),
    )


def fake_log(tmp_path: Path) -> Path:
    """Where a fake CLI logs its invocations (FAKE_AGENT_LOG): a folder of its own, see `log_sandbox`."""
    folder = tmp_path / "fake-log"
    folder.mkdir(exist_ok=True)
    return folder / "invocations.jsonl"


def log_sandbox(passthrough: list[str]) -> dict | None:
    """The sandbox hides the worker's /tmp and keeps the host read-only: a fake that logs its invocations
    gets the log's folder (and only that) writable. Otherwise the worker's default sandbox applies."""
    log = os.environ.get("FAKE_AGENT_LOG")
    if "FAKE_AGENT_LOG" not in passthrough or not log:
        return None
    return {"writable_paths": [str(Path(log).parent)]}


def request_for(order: WorkOrder, workspace: Path, *, iteration=1, feedback: Path | None = None, session=None):
    prompt_file = workspace.parent / "prompt.md"
    prompt_file.write_text(order.task_prompt)
    return AgentRequest(
        work_order=order,
        workspace=str(workspace),
        iteration=iteration,
        prompt=order.task_prompt,
        prompt_file=str(prompt_file),
        feedback_file=str(feedback) if feedback else None,
        session_id=session,
    )


def run_fake(name: str, argv: list[str], cwd: Path, stdin: bytes, **env: str) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ["PATH"], "HOME": str(cwd.parent), **env}
    return subprocess.run([str(FAKE_BIN / name), *argv[1:]], cwd=cwd, input=stdin, capture_output=True, env=full_env)


def feed_all(parser, stdout: bytes, stderr: bytes = b""):
    events = []
    for line in stdout.decode().splitlines():
        events += parser.feed("stdout", line)
    for line in stderr.decode().splitlines():
        events += parser.feed("stderr", line)
    return events, parser.finish()


# -- claude-code -----------------------------------------------------------------------


def test_claude_transcript_parsed_field_by_field(sample_repo):
    order = order_for(sample_repo, "claude-code", max_turns=20)
    driver = get_driver("claude-code")
    inv = driver.build_invocation(request_for(order, sample_repo))
    proc = run_fake("claude", inv.argv, sample_repo, inv.stdin)
    assert proc.returncode == 0, proc.stderr
    raw_lines = proc.stdout.decode().splitlines()
    events, run = feed_all(driver.new_parser(), proc.stdout)

    init = json.loads(raw_lines[0])
    result = json.loads(raw_lines[-1])
    assert run.session_id == init["session_id"] == result["session_id"]
    assert run.model == "claude-sonnet-4-5-20250929"
    assert run.turns == 4 == result["num_turns"]
    # Tokens by kind: every block repeats its message's usage, counted once per message.
    assert run.tokens == TokenUsage(input=20, output=479, cache_creation=6734, cache_read=61816)
    assert run.tokens.model_dump() == {
        "input": result["usage"]["input_tokens"],
        "output": result["usage"]["output_tokens"],
        "cache_creation": result["usage"]["cache_creation_input_tokens"],
        "cache_read": result["usage"]["cache_read_input_tokens"],
    }
    assert run.cost_usd == pytest.approx(result["total_cost_usd"]) and run.cost_usd > 0
    assert [t.name for t in run.tool_calls] == ["Read", "Edit", "Bash"]
    read, edit, bash = run.tool_calls
    assert read.input == {"file_path": str(sample_repo / "mathlib.py")} and "def add(a, b):" in read.output
    assert edit.input["new_string"].endswith("return a + b") and "has been updated" in edit.output
    assert bash.input["command"] == "python3 -m unittest test_mathlib"
    assert bash.is_error is True and "NotImplementedError: multiply" in bash.output  # multiply is still a stub
    assert all(t.id and t.id.startswith("toolu_") and t.duration_ms is not None for t in run.tool_calls)
    assert run.final_message.startswith("Implemented `add`")
    assert not run.is_error and run.unparsed_lines == 0
    assert "return a + b" in (sample_repo / "mathlib.py").read_text()  # the fake really edited the file

    kinds = [e.kind for e in events]
    assert kinds.count("tool_call") == 3 and kinds.count("tool_result") == 3
    usage_deltas = [e.tokens for e in events if e.kind == "usage" and e.tokens and e.tokens.total]
    assert sum((u for u in usage_deltas), TokenUsage()) == run.tokens


def test_claude_invocation_flags_resume_context_and_auth(sample_repo, tmp_path, monkeypatch):
    (sample_repo / "AGENTS.md").write_text("Always run the unit tests.\n")
    feedback = tmp_path / "feedback-1.md"
    feedback.write_text("## Gate failed\nFAIL: test_multiply\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    order = order_for(
        sample_repo,
        "claude-code",
        model="claude-sonnet-4-5",
        max_turns=30,
        permission_mode="bypassPermissions",
        allowed_tools=["Read", "Edit", "Bash(python3 *)"],
        disallowed_tools="WebFetch",
        env_passthrough=["ANTHROPIC_API_KEY"],
    )
    inv = get_driver("claude-code").build_invocation(
        request_for(order, sample_repo, iteration=2, feedback=feedback, session="sess-123")
    )
    argv = inv.argv
    assert argv[:5] == ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-5"
    assert argv[argv.index("--max-turns") + 1] == "30"
    assert argv[argv.index("--permission-mode") + 1] == "bypassPermissions"
    assert argv[argv.index("--allowedTools") + 1] == "Read,Edit,Bash(python3 *)"
    assert argv[argv.index("--disallowedTools") + 1] == "WebFetch"
    assert argv[argv.index("--resume") + 1] == "sess-123"
    system = argv[argv.index("--append-system-prompt") + 1]
    assert "Always run the unit tests." in system and GATE_COMMAND in system and "test_multiply" in system
    assert TASK_PROMPT in inv.stdin.decode() and "iteration 2" in inv.stdin.decode()
    assert inv.env["ANTHROPIC_API_KEY"] == "sk-ant-test" and "AWS_SECRET_ACCESS_KEY" not in inv.env

    # Subscription mode: the key is removed even when named, so the CLI uses the credentials file.
    sub = order_for(sample_repo, "claude-code", auth="subscription", env_passthrough=["ANTHROPIC_API_KEY"])
    inv = get_driver("claude-code").build_invocation(request_for(sub, sample_repo))
    assert "ANTHROPIC_API_KEY" not in inv.env and "--resume" not in inv.argv
    # Not named → not passed.
    plain = order_for(sample_repo, "claude-code")
    assert "ANTHROPIC_API_KEY" not in get_driver("claude-code").build_invocation(request_for(plain, sample_repo)).env


@pytest.mark.parametrize(
    ("mode", "error_type", "retryable", "needle"),
    [
        ("auth_error", ErrorType.AGENT_AUTH, False, "Not logged in · Please run /login"),
        ("bad_key", ErrorType.AGENT_AUTH, False, "Invalid API key"),
        ("rate_limit", ErrorType.AGENT_CRASH, True, "429"),
        ("overloaded", ErrorType.AGENT_CRASH, True, "529 Overloaded"),
        ("max_turns", ErrorType.AGENT_TASK_FAILURE, False, "maximum number of turns"),
    ],
)
def test_claude_failure_modes_are_classified(sample_repo, mode, error_type, retryable, needle):
    from activities.build import classify_outcome

    driver = get_driver("claude-code")
    inv = driver.build_invocation(request_for(order_for(sample_repo, "claude-code"), sample_repo))
    proc = run_fake("claude", inv.argv, sample_repo, inv.stdin, FAKE_AGENT_MODE=mode)
    _, run = feed_all(driver.new_parser(), proc.stdout, proc.stderr)
    assert run.is_error and run.unparsed_lines == 0
    error, found = classify_outcome(ProcessOutcome(exit_code=proc.returncode, duration_ms=1), run, 1, "")
    assert error is not None and error.type == error_type and needle in error.message
    assert found is not None and found.retryable is retryable


# -- codex -----------------------------------------------------------------------------


def test_codex_transcript_parsed_field_by_field(sample_repo):
    order = order_for(sample_repo, "codex", model="gpt-5-codex", sandbox="workspace-write")
    driver = get_driver("codex")
    inv = driver.build_invocation(request_for(order, sample_repo))
    assert inv.argv == [
        "codex", "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write",
        "--model", "gpt-5-codex", "-",
    ]  # fmt: skip
    proc = run_fake("codex", inv.argv, sample_repo, inv.stdin)
    assert proc.returncode == 0, proc.stderr
    thread = json.loads(proc.stdout.decode().splitlines()[0])["thread_id"]
    events, run = feed_all(driver.new_parser(), proc.stdout)
    assert run.session_id == thread
    assert run.model == "gpt-5-codex" and run.turns == 1
    assert run.tokens == TokenUsage(input=24512 - 19200, output=853, cache_read=19200)
    assert run.cost_usd == pytest.approx((5312 * 1.25 + 853 * 10 + 19200 * 0.125) / 1e6)
    names = [t.name for t in run.tool_calls]
    assert names == ["command_execution", "file_change", "command_execution"]
    cat, change, tests = run.tool_calls
    assert cat.input == {"command": "/bin/bash -lc 'cat mathlib.py'"} and "def multiply" in cat.output
    assert change.output == "update " + str(sample_repo / "mathlib.py") and not change.is_error
    assert tests.is_error is True and "NotImplementedError: multiply" in tests.output
    assert run.final_message.startswith("Implemented `add`")
    assert run.unparsed_lines == 0 and not run.is_error
    assert [e.kind for e in events].count("tool_call") == 3

    # Iteration 2 resumes the thread; `resume` takes the sandbox as a config override.
    inv2 = get_driver("codex").build_invocation(request_for(order, sample_repo, iteration=2, session=thread))
    assert inv2.argv[:3] == ["codex", "exec", "resume"] and inv2.argv[-2:] == [thread, "-"]
    assert 'sandbox_mode="workspace-write"' in inv2.argv and "--sandbox" not in inv2.argv


@pytest.mark.parametrize(
    ("mode", "error_type", "retryable"),
    [("auth_error", ErrorType.AGENT_AUTH, False), ("rate_limit", ErrorType.AGENT_CRASH, True)],
)
def test_codex_failure_modes_are_classified(sample_repo, mode, error_type, retryable):
    from activities.build import classify_outcome

    driver = get_driver("codex")
    inv = driver.build_invocation(request_for(order_for(sample_repo, "codex"), sample_repo))
    proc = run_fake("codex", inv.argv, sample_repo, inv.stdin, FAKE_AGENT_MODE=mode)
    _, run = feed_all(driver.new_parser(), proc.stdout, proc.stderr)
    error, found = classify_outcome(ProcessOutcome(exit_code=proc.returncode, duration_ms=1), run, 1, "")
    assert error.type == error_type and found.retryable is retryable
    assert run.error_message and run.error_message in error.message


CODEX_ITEMS = [  # item shapes from codex-rs/exec/src/exec_events.rs
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    {"type": "item.started", "item": {"id": "item_1", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                      "arguments": {"q": "retry"}, "result": None, "error": None,
                                      "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                        "arguments": {"q": "retry"}, "status": "completed", "error": None,
                                        "result": {"content": [{"type": "text", "text": "found 3"}],
                                                   "structured_content": None}}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "mcp_tool_call", "server": "db", "tool": "query",
                                        "arguments": {}, "result": None, "error": {"message": "timeout"},
                                        "status": "failed"}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "web_search", "query": "temporal retry policy",
                                        "action": {"type": "search", "query": "temporal retry policy"}}},
    {"type": "item.started", "item": {"id": "item_4", "type": "collab_tool_call", "tool": "spawn_agent",
                                      "sender_thread_id": "t1", "receiver_thread_ids": ["t2"], "prompt": "lint it",
                                      "agents_states": {}, "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_4", "type": "collab_tool_call", "tool": "spawn_agent",
                                        "sender_thread_id": "t1", "receiver_thread_ids": ["t2"], "prompt": "lint it",
                                        "agents_states": {"t2": {"status": "completed", "message": None}},
                                        "status": "completed"}},
    {"type": "item.plan.delta", "item_id": "item_5", "delta": "1. fix"},
    {"type": "item.completed", "item": {"id": "item_5", "type": "plan", "text": "1. fix add"}},
    {"type": "item.updated", "item": {"id": "item_6", "type": "todo_list", "items": [
        {"text": "fix add", "completed": True}, {"text": "fix multiply", "completed": False}]}},
    {"type": "item.completed", "item": {"id": "item_6", "type": "todo_list", "items": [
        {"text": "fix add", "completed": True}, {"text": "fix multiply", "completed": True}]}},
    {"type": "item.completed", "item": {"id": "item_7", "type": "error", "message": "model fell back"}},
    {"type": "request_user_input", "id": "turn_1", "call_id": "c1", "questions": [{"question": "Which branch?"}]},
    {"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 40, "output_tokens": 7}},
    {"type": "turn.started"},
    {"type": "turn.failed", "error": {"message": "stream disconnected before completion: connection reset by peer"}},
]  # fmt: skip


def test_codex_every_item_type_is_parsed():
    parser = CodexJsonParser(model="gpt-5-codex")
    events = []
    for line in CODEX_ITEMS:
        events += parser.feed("stdout", json.dumps(line))
    run = parser.finish()
    assert run.unparsed_lines == 0 and run.turns == 2 and run.session_id == CODEX_ITEMS[0]["thread_id"]
    assert run.tokens == TokenUsage(input=60, output=7, cache_read=40)
    names = [t.name for t in run.tool_calls]
    assert names == ["mcp:docs/search", "mcp:db/query", "web_search", "collab:spawn_agent"]
    search, query, web, collab = run.tool_calls
    assert search.input == {"q": "retry"} and search.output == "found 3" and not search.is_error
    assert query.is_error and query.output == "timeout"
    assert web.input == {"query": "temporal retry policy"}
    assert collab.input["prompt"] == "lint it" and collab.output == "t2: completed"
    texts = [e.text for e in events if e.kind == "message"]
    assert "1. fix add" in texts and "[x] fix add\n[x] fix multiply" in texts and "warning: model fell back" in texts
    assert "asked for input: Which branch?" in texts
    assert run.is_error and "connection reset by peer" in run.error_message
    assert classify(message=run.error_message).reason == "connection"


async def test_codex_waiting_for_network_is_stopped_and_classified(sample_repo, tmp_path):
    """Codex without a network retries forever; the parser's stop_reason ends it, the table classifies it."""
    from activities.build import classify_outcome
    from agentgate.process import run_streaming

    driver = get_driver("codex")
    inv = driver.build_invocation(request_for(order_for(sample_repo, "codex"), sample_repo))
    parser = driver.new_parser()
    env = {"PATH": f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "FAKE_AGENT_MODE": "offline"}
    outcome = await run_streaming(
        inv.argv, cwd=sample_repo, env=env, stdout_path=tmp_path / "o.log", stderr_path=tmp_path / "e.log",
        on_line=parser.feed, timeout_seconds=60, grace_seconds=2, stdin_data=inv.stdin, should_stop=parser.stop_reason,
    )  # fmt: skip
    run = parser.finish()
    assert outcome.stopped and "waiting for network" in outcome.stopped and not outcome.timed_out
    assert outcome.survivors == [] and outcome.duration_ms < 30_000
    error, found = classify_outcome(outcome, run, 1, (tmp_path / "e.log").read_text())
    assert (error.type, found.reason, found.retryable) == (ErrorType.AGENT_CRASH, "connection", True)
    assert "Reconnecting... waiting for network" in error.message
    # Opting out: the parser lets codex wait (the iteration and idle timeouts still bound it).
    patient = get_driver("codex")
    patient.build_invocation(request_for(order_for(sample_repo, "codex", wait_for_network=True), sample_repo))
    waiting = patient.new_parser()
    waiting.feed("stdout", json.dumps({"type": "error", "message": "Reconnecting... waiting for network (x)"}))
    assert waiting.stop_reason() is None


# -- opencode --------------------------------------------------------------------------

OPENCODE_TRANSCRIPT = [
    {"type": "step_start", "timestamp": 1767036059338, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_1", "sessionID": "ses_494719016ffe85dkDMj0FPRbHK", "messageID": "msg_1",
              "type": "step-start", "snapshot": "4b825dc6"}},
    {"type": "tool_use", "timestamp": 1767036061000, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_2", "sessionID": "ses_494719016ffe85dkDMj0FPRbHK", "messageID": "msg_1", "type": "tool",
              "callID": "call_abc", "tool": "bash",
              "state": {"status": "completed", "input": {"command": "python3 -m unittest"},
                        "output": "OK", "title": "python3 -m unittest", "metadata": {"exit": 0},
                        "time": {"start": 1767036060000, "end": 1767036060750}}}},
    {"type": "tool_use", "timestamp": 1767036061100, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_3", "sessionID": "ses_494719016ffe85dkDMj0FPRbHK", "messageID": "msg_1", "type": "tool",
              "callID": "call_def", "tool": "edit",
              "state": {"status": "error", "input": {"filePath": "x.py"}, "error": "oldString not found",
                        "time": {"start": 1767036061000, "end": 1767036061020}}}},
    {"type": "step_finish", "timestamp": 1767036061200, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_4", "sessionID": "ses_494719016ffe85dkDMj0FPRbHK", "messageID": "msg_1",
              "type": "step-finish", "reason": "tool-calls", "cost": 0.0123,
              "tokens": {"input": 1200, "output": 300, "reasoning": 50, "cache": {"read": 8000, "write": 400}}}},
    {"type": "text", "timestamp": 1767036062000, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_5", "type": "text", "text": "Done: tests pass.", "time": {"start": 1, "end": 2}}},
    {"type": "step_finish", "timestamp": 1767036062100, "sessionID": "ses_494719016ffe85dkDMj0FPRbHK",
     "part": {"id": "prt_6", "type": "step-finish", "reason": "stop", "cost": 0.002,
              "tokens": {"input": 100, "output": 20, "reasoning": 0, "cache": {"read": 9000, "write": 0}}}},
]  # fmt: skip


def test_opencode_transcript_parsed_field_by_field(sample_repo):
    order = order_for(sample_repo, "opencode", model="anthropic/claude-sonnet-4-5")
    driver = get_driver("opencode")
    request = request_for(order, sample_repo, iteration=2, session="ses_494719016ffe85dkDMj0FPRbHK")
    inv = driver.build_invocation(request)
    assert inv.argv[:4] == ["opencode", "run", "--format", "json"]
    assert inv.argv[inv.argv.index("--session") + 1] == "ses_494719016ffe85dkDMj0FPRbHK"
    parser = driver.new_parser()
    lines = "\n".join(json.dumps(x) for x in OPENCODE_TRANSCRIPT).encode()
    events, run = feed_all(parser, lines)
    assert run.session_id == "ses_494719016ffe85dkDMj0FPRbHK" and run.model == "anthropic/claude-sonnet-4-5"
    assert run.turns == 2 and run.cost_usd == pytest.approx(0.0143)
    assert run.tokens == TokenUsage(input=1300, output=370, cache_creation=400, cache_read=17000)
    bash, edit = run.tool_calls
    assert (bash.name, bash.id, bash.output, bash.duration_ms, bash.is_error) == ("bash", "call_abc", "OK", 750, False)
    assert edit.is_error and edit.output == "oldString not found"
    assert run.final_message == "Done: tests pass." and run.unparsed_lines == 0


def test_opencode_error_event():
    parser = OpenCodeJsonParser()
    parser.feed(
        "stdout",
        json.dumps(
            {
                "type": "error",
                "sessionID": "ses_x",
                "error": {
                    "name": "ProviderAuthError",
                    "data": {"providerID": "anthropic", "message": "API key is missing"},
                },
            }
        ),
    )
    run = parser.finish()
    assert run.is_error and run.error_kind == "ProviderAuthError" and run.error_message == "API key is missing"
    assert classify(kind=run.error_kind, message=run.error_message).error_type == ErrorType.AGENT_AUTH


# -- robustness ------------------------------------------------------------------------


@pytest.mark.parametrize("parser_cls", [ClaudeStreamParser, CodexJsonParser, OpenCodeJsonParser])
def test_unknown_lines_are_counted_never_fatal(parser_cls):
    parser = parser_cls()
    for line in ["not json at all", "[1, 2]", '{"type": "from_the_future", "x": 1}', '{"no_type": true}', "", "{"]:
        parser.feed("stdout", line)
    parser.feed("stderr", "some warning")
    assert parser.finish().unparsed_lines == 5


def test_drivers_registered():
    assert {"command", "claude-code", "codex", "opencode"} <= set(available_drivers())


def test_pricing_table():
    assert price_for("claude-sonnet-4-5-20250929").input == 3.0
    assert price_for("claude-opus-4-1-20250805").output == 75.0
    assert price_for("claude-opus-4-5").output == 25.0
    assert price_for("gpt-5-codex").cache_read == 0.125
    assert price_for("gpt-5-mini").input == 0.25
    assert price_for("some-unknown-model") is None and estimate_cost(None, TokenUsage(input=5)) is None
    tokens = TokenUsage(input=1_000_000, output=1_000_000, cache_creation=1_000_000, cache_read=1_000_000)
    assert estimate_cost("claude-sonnet-4-5", tokens) == pytest.approx(3 + 15 + 3.75 + 0.30)


# -- classification table, row by row --------------------------------------------------

CLASSIFY_ROWS = [
    # (signals, reason, type, retryable)
    ({"kind": "error_max_turns"}, "max_turns", ErrorType.AGENT_TASK_FAILURE, False),
    ({"message": "Reached max turns (10)"}, "max_turns", ErrorType.AGENT_TASK_FAILURE, False),
    ({"kind": "authentication_failed", "message": "Not logged in · Please run /login"}, "authentication",
     ErrorType.AGENT_AUTH, False),
    ({"message": "Invalid API key · Fix external API key", "status": 401}, "authentication", ErrorType.AGENT_AUTH,
     False),
    ({"message": "unexpected status 401 Unauthorized: Missing bearer"}, "authentication", ErrorType.AGENT_AUTH, False),
    ({"status": 403}, "authentication", ErrorType.AGENT_AUTH, False),
    ({"kind": "billing_error", "message": "Credit balance is too low"}, "billing", ErrorType.AGENT_AUTH, False),
    ({"kind": "rate_limit"}, "rate_limit", ErrorType.AGENT_CRASH, True),
    ({"status": 429}, "rate_limit", ErrorType.AGENT_CRASH, True),
    ({"message": "exceeded retry limit, last status: 429 Too Many Requests"}, "rate_limit", ErrorType.AGENT_CRASH,
     True),
    ({"status": 529, "message": "API Error: 529 Overloaded"}, "overloaded", ErrorType.AGENT_CRASH, True),
    ({"message": "overloaded_error"}, "overloaded", ErrorType.AGENT_CRASH, True),
    ({"status": 503}, "server_error", ErrorType.AGENT_CRASH, True),
    ({"stderr": "Error: read ECONNRESET"}, "connection", ErrorType.AGENT_CRASH, True),
    ({"message": "Reconnecting... waiting for network (Connection failed: error sending request)"}, "connection",
     ErrorType.AGENT_CRASH, True),
    ({"kind": "APIError", "message": "Cannot connect to API: Unable to connect. Is the computer able to access the "
      "url?"}, "connection", ErrorType.AGENT_CRASH, True),
    ({"kind": "ProviderModelNotFoundError", "message": "Model not found: anthropic/x"}, "model_not_found",
     ErrorType.AGENT_CRASH, False),
    ({"message": "ProviderModelNotFoundError: Model not found: a/b", "stderr": "Unable to connect"},
     "model_not_found", ErrorType.AGENT_CRASH, False),
    ({"message": "stream disconnected before completion: connection reset by peer"}, "connection",
     ErrorType.AGENT_CRASH, True),
    ({"status": 400, "message": "API Error: 400 model: bogus not found"}, "invalid_request", ErrorType.AGENT_CRASH,
     False),
    ({"stderr": "error: unknown option '--bogus'", "exit_code": 1}, "invalid_arguments", ErrorType.AGENT_CRASH, False),
    ({"stderr": "error: unexpected argument '--bogus' found", "exit_code": 2}, "invalid_arguments",
     ErrorType.AGENT_CRASH, False),
    ({"stderr": "error: option '--permission-mode <mode>' argument 'x' is invalid."}, "invalid_arguments",
     ErrorType.AGENT_CRASH, False),
    ({"exit_code": 127, "stderr": "claude: not found"}, "cli_not_found", ErrorType.AGENT_CRASH, False),
]  # fmt: skip


@pytest.mark.parametrize(("signals", "reason", "error_type", "retryable"), CLASSIFY_ROWS)
def test_classification_table(signals, reason, error_type, retryable):
    found = classify(**signals)
    assert found is not None, signals
    assert (found.reason, found.error_type, found.retryable) == (reason, error_type, retryable)


def test_every_rule_has_a_test_row():
    assert {r.reason for r in RULES} == {row[1] for row in CLASSIFY_ROWS}


def test_unrecognised_failure_is_not_classified():
    assert classify(message="something odd happened", exit_code=1) is None
    # An offline OpenCode logs its failed models.dev refresh on every run: not a reason to retry another failure.
    offline_noise = (
        'level=ERROR message="Failed to fetch models.dev" cause="Cause([Fail(HttpClientError: Transport error '
        "(GET https://models.opencode.ai/api.json) (cause: Error: Unable to connect. Is the computer able to "
        'access the url?))])"'
    )
    assert classify(message="Session not found", stderr=offline_noise, exit_code=1) is None


# -- end to end through the workflow -----------------------------------------------------


@pytest.fixture
def fake_path(monkeypatch):
    """The fake CLIs first on the worker's PATH; the agent inherits PATH through the allowlist."""
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")


async def _run(env, settings, order):
    async with running_worker(env, settings):
        return await env.client.execute_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )


@pytest.mark.parametrize(("driver", "model"), [("claude-code", None), ("codex", "gpt-5-codex")])
async def test_driver_end_to_end_passes_after_two_iterations(skip_env, settings, sample_repo, fake_path, tmp_path,
                                                             monkeypatch, driver, model):  # fmt: skip
    log = fake_log(tmp_path)
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.setenv("SECRET_THAT_MUST_NOT_LEAK", "x")
    order = order_for(sample_repo, driver, model=model, env_passthrough=["FAKE_AGENT_LOG"])
    outcome = await _run(skip_env, settings, order)

    assert outcome.result == "passed", outcome.error
    assert outcome.iterations == 2
    first, second = outcome.history
    assert not first.verification.passed and second.verification.passed
    assert first.agent.session_id and second.agent.session_id == first.agent.session_id  # resumed
    assert first.agent.tool_calls >= 3 and first.agent.turns
    assert outcome.tokens.total > 0 and outcome.tokens.cache_read > 0
    assert outcome.cost_usd > 0
    assert outcome.cost_usd == pytest.approx((first.agent.cost_usd or 0) + (second.agent.cost_usd or 0), abs=1e-6)

    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    a2 = store.read_json(ctx, "agent-2.json")
    assert a2["success"] and a2["unparsed_lines"] == 0 and a2["session_id"] == first.agent.session_id
    assert (first.agent.session_id in a2["argv"]) and ("--resume" in a2["argv"] or "resume" in a2["argv"])
    assert "test_multiply" in " ".join(a2["argv"]) or driver == "codex"  # feedback in claude's system prompt
    assert store.read_text(ctx, "agent-1.stdout.log").splitlines()[0].startswith('{"type":')  # raw bytes kept
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(calls) == 2
    assert all("SECRET_THAT_MUST_NOT_LEAK" not in c["env"] for c in calls)
    assert "return a * b" in subprocess.check_output(
        ["git", "-C", str(sample_repo), "show", f"agentgate/{order.id}:mathlib.py"], text=True
    )


async def test_auth_error_ends_failed_build_with_the_cli_message(
    skip_env, settings, sample_repo, fake_path, monkeypatch
):
    monkeypatch.setenv("FAKE_AGENT_MODE", "auth_error")
    order = order_for(sample_repo, "claude-code", env_passthrough=["FAKE_AGENT_MODE"])
    outcome = await _run(skip_env, settings, order)
    assert outcome.result == "failed_build"
    assert outcome.build_error.type == ErrorType.AGENT_AUTH
    assert "Not logged in · Please run /login" in outcome.build_error.message
    store = ArtifactStore(settings.runs_dir)
    record = store.read_json(RunContext(work_order_id=order.id, run_id=outcome.run_id), "agent-1.json")
    assert record["error"]["type"] == "agent_auth" and "Not logged in" in record["error"]["message"]


async def test_rate_limit_is_retried_by_temporal_then_fails(skip_env, settings, sample_repo, fake_path, tmp_path,
                                                            monkeypatch):  # fmt: skip
    log = fake_log(tmp_path)
    monkeypatch.setenv("FAKE_AGENT_MODE", "rate_limit")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    order = order_for(sample_repo, "codex", env_passthrough=["FAKE_AGENT_MODE", "FAKE_AGENT_LOG"])
    outcome = await _run(skip_env, settings, order)
    assert outcome.result == "failed_build"
    assert len(log.read_text().splitlines()) == 3  # AGENT_RETRY: three attempts with backoff
    assert "429" in outcome.build_error.message


async def test_codex_without_network_is_stopped_retried_and_classified(skip_env, settings, sample_repo, fake_path,
                                                                       tmp_path, monkeypatch):  # fmt: skip
    log = fake_log(tmp_path)
    monkeypatch.setenv("FAKE_AGENT_MODE", "offline")
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    order = order_for(sample_repo, "codex", env_passthrough=["FAKE_AGENT_MODE", "FAKE_AGENT_LOG"], grace_seconds=2)
    outcome = await _run(skip_env, settings, order)
    assert outcome.result == "failed_build"
    assert len(log.read_text().splitlines()) == 3  # stopped each time, retried by AGENT_RETRY
    assert outcome.build_error.type == ErrorType.AGENT_CRASH
    assert outcome.build_error.message.startswith("connection: Reconnecting... waiting for network")
    record = ArtifactStore(settings.runs_dir).read_json(RunContext(work_order_id=order.id, run_id=outcome.run_id),
                                                        "agent-1.json")  # fmt: skip
    assert "waiting for network" in record["stop_reason"] and not record["timed_out"] and record["survivors"] == []


# -- salvage: a run that ends on a limit keeps what the agent wrote ---------------------------

EDIT_THEN_WAIT = """import pathlib, sys, time
p = pathlib.Path("mathlib.py")
p.write_text(p.read_text().replace('raise NotImplementedError("add")', "return a + b"))
print("implemented add; thinking about multiply", flush=True)
pathlib.Path(sys.argv[1]).write_text("edited")
time.sleep(120)
"""


def _command_order(repo: Path, tmp_path: Path, **options) -> tuple[WorkOrder, Path]:
    files = tmp_path / "agent-files"  # outside the workspace: the sandbox must let the agent reach it
    files.mkdir()
    script, marker = files / "edit_then_wait.py", files / "edited"
    script.write_text(EDIT_THEN_WAIT)
    order = WorkOrder(
        id=new_work_order_id(), created_at=datetime.now(UTC), task_prompt=TASK_PROMPT, gates=[GATE_COMMAND],
        workspace_source={"type": "local", "path": str(repo)},
        agent={"driver": "command", "command": f"{sys.executable} {script} {marker}", "options": options},
        sandbox={"writable_paths": [str(files)]},
    )  # fmt: skip
    return order, marker


def _assert_salvaged(repo: Path, order: WorkOrder, partial: bool, commit: str | None) -> None:
    branch = f"agentgate/{order.id}"
    assert partial is True
    assert commit == subprocess.check_output(["git", "-C", str(repo), "rev-parse", branch], text=True).strip()
    saved = subprocess.check_output(["git", "-C", str(repo), "show", f"{branch}:mathlib.py"], text=True)
    assert "return a + b" in saved and 'raise NotImplementedError("multiply")' in saved


async def test_max_turns_ends_the_run_with_the_edit_salvaged(skip_env, settings, sample_repo, fake_path):
    outcome = await _run(skip_env, settings, order := order_for(sample_repo, "claude-code", max_turns=2))
    assert outcome.result == "failed_build" and outcome.iterations == 1
    assert outcome.build_error.type == ErrorType.AGENT_TASK_FAILURE
    assert "maximum number of turns" in outcome.build_error.message
    assert outcome.history[0].agent.tool_calls == 2 and outcome.history[0].agent.cost_usd > 0
    _assert_salvaged(sample_repo, order, outcome.partial, outcome.delivery.commit)


async def test_idle_timeout_ends_the_run_with_the_edit_salvaged(skip_env, settings, sample_repo, tmp_path):
    order, _ = _command_order(sample_repo, tmp_path, idle_timeout_seconds=2, grace_seconds=1)
    outcome = await _run(skip_env, settings, order)
    assert outcome.result == "failed_build" and outcome.build_error.type == ErrorType.AGENT_STALLED
    _assert_salvaged(sample_repo, order, outcome.partial, outcome.delivery.commit)


async def test_cancel_ends_the_run_with_the_edit_salvaged(dev_env, settings, sample_repo, tmp_path):
    import asyncio

    from temporalio.client import WorkflowFailureError

    order, marker = _command_order(sample_repo, tmp_path, grace_seconds=1)
    async with running_worker(dev_env, settings):
        handle = await dev_env.client.start_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )
        for _ in range(600):  # the agent has made its edit (at most 30 s)
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), "the agent never made its edit"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    store = ArtifactStore(settings.runs_dir)
    run_json = store.read_json(RunContext(work_order_id=order.id, run_id=handle.first_execution_run_id), "run.json")
    assert run_json["result"] == "canceled" and run_json["build_error"]["type"] == "canceled"
    _assert_salvaged(sample_repo, order, run_json["partial"], run_json["delivery"]["commit"])


def test_fake_bins_are_executable():
    for name in ("claude", "codex"):
        path = FAKE_BIN / name
        assert os.access(path, os.X_OK) and path.read_text().startswith("#!/usr/bin/env python3")
    assert sys.executable
