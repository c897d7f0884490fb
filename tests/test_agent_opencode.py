"""The OpenCode driver against a fake `opencode` that speaks the real `run --format json` stream.

The fake (tests/fakes/opencode_cli/opencode) really edits the sample repository and behaves
like opencode-ai 1.18.33 on the command line (usage errors, sessions, credentials); the
real CLI's own stream is compared with it in tests/test_agent_real_clis.py. Here: the
stream parsed field by field, the CLI's failures classified, and whole runs through the
real WorkOrderWorkflow — two iterations with feedback, an auth error, a rate limit retried
by Temporal, and an iteration timeout whose partial work is salvaged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from activities.build import classify_outcome
from agentgate.agents import get_driver
from agentgate.artifacts import ArtifactStore
from agentgate.models import ErrorType, RunContext, TokenUsage
from agentgate.process import ProcessOutcome
from tests.test_agent_drivers import _run, fake_log, feed_all, order_for, request_for

FAKE_DIR = Path(__file__).parent / "fakes" / "opencode_cli"
FAKE = FAKE_DIR / "opencode"
MODEL = "anthropic/claude-sonnet-4-5"
SONNET = {"input": 3.0, "output": 15.0, "cache_creation": 3.75, "cache_read": 0.30}  # USD per Mtok


def run_fake(argv: list[str], cwd: Path, stdin: bytes | None, home: Path, **env: str):
    full_env = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    return subprocess.run([str(FAKE), *argv[1:]], cwd=cwd, input=stdin or b"", capture_output=True, env=full_env)


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    home = tmp_path / "agent-home"
    home.mkdir()
    return home


def _invocation(repo: Path, *, iteration=1, session=None, feedback=None, **options):
    driver = get_driver("opencode")
    order = order_for(repo, "opencode", model=options.pop("model", MODEL), **options)
    inv = driver.build_invocation(request_for(order, repo, iteration=iteration, session=session, feedback=feedback))
    return driver, inv


def test_stream_parsed_field_by_field(sample_repo, agent_home):
    driver, inv = _invocation(sample_repo)
    assert inv.argv == ["opencode", "run", "--format", "json", "--print-logs", "--log-level", "ERROR",
                        "--model", MODEL]  # fmt: skip
    assert inv.stdin.decode().startswith("Implement")  # the prompt goes in on stdin, unquoted
    proc = run_fake(inv.argv, sample_repo, inv.stdin, agent_home, ANTHROPIC_API_KEY="sk-ant-test")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    events, run = feed_all(driver.new_parser(), proc.stdout, proc.stderr)

    steps = [x["part"] for x in lines if x["type"] == "step_finish"]
    assert run.session_id == lines[0]["sessionID"] and run.session_id.startswith("ses_")
    assert run.model == MODEL and run.turns == len(steps) == 4
    assert run.tokens == TokenUsage(
        input=sum(s["tokens"]["input"] for s in steps),
        output=sum(s["tokens"]["output"] + s["tokens"]["reasoning"] for s in steps),
        cache_creation=sum(s["tokens"]["cache"]["write"] for s in steps),
        cache_read=sum(s["tokens"]["cache"]["read"] for s in steps),
    )
    assert run.cost_usd == pytest.approx(sum(s["cost"] for s in steps)) and run.cost_usd > 0
    priced = sum(getattr(run.tokens, kind) * usd for kind, usd in SONNET.items()) / 1e6
    assert run.cost_usd == pytest.approx(priced, rel=1e-6)  # OpenCode's own figure, at list price

    assert [t.name for t in run.tool_calls] == ["read", "edit", "bash"]
    read, edit, bash = run.tool_calls
    assert read.input == {"filePath": str(sample_repo / "mathlib.py")} and "00004| def add(a, b):" in read.output
    assert edit.input["oldString"].endswith('raise NotImplementedError("add")')
    assert edit.input["newString"].endswith("return a + b") and edit.output == "Edit applied successfully."
    assert bash.input == {"command": "python3 -m unittest test_mathlib", "description": "Run the unit tests"}
    assert bash.is_error is True and "NotImplementedError: multiply" in bash.output  # exit 1 in metadata
    assert not read.is_error and not edit.is_error
    assert all(t.id.startswith("toolu_01") and t.duration_ms is not None for t in run.tool_calls)
    assert run.final_message.startswith("Implemented `add`")
    assert not run.is_error and run.unparsed_lines == 0 and run.error_message is None
    assert "return a + b" in (sample_repo / "mathlib.py").read_text()  # the fake really edited the file

    kinds = [e.kind for e in events]
    assert kinds.count("tool_call") == 3 and kinds.count("tool_result") == 3 and kinds.count("usage") == 4
    assert sum((e.tokens for e in events if e.kind == "usage"), TokenUsage()) == run.tokens
    assert [e.turns for e in events if e.kind == "usage"] == [1, 2, 3, 4]


def test_session_continues_from_iteration_two(sample_repo, agent_home, tmp_path):
    env = {"ANTHROPIC_API_KEY": "sk-ant-test"}
    driver, inv = _invocation(sample_repo)
    first = run_fake(inv.argv, sample_repo, inv.stdin, agent_home, **env)
    _, run1 = feed_all(driver.new_parser(), first.stdout)
    feedback = tmp_path / "feedback-1.md"
    feedback.write_text("## Gate failed\nFAIL: test_multiply (NotImplementedError: multiply)\n")
    driver, inv2 = _invocation(sample_repo, iteration=2, session=run1.session_id, feedback=feedback)
    assert inv2.argv[inv2.argv.index("--session") + 1] == run1.session_id
    assert "test_multiply" in inv2.stdin.decode() and "iteration 2" in inv2.stdin.decode()
    second = run_fake(inv2.argv, sample_repo, inv2.stdin, agent_home, **env)
    assert second.returncode == 0, second.stderr
    _, run2 = feed_all(driver.new_parser(), second.stdout)
    assert run2.session_id == run1.session_id and run2.final_message.startswith("Implemented `multiply`")


def _classified(proc, driver):
    _, run = feed_all(driver.new_parser(), proc.stdout, proc.stderr)
    outcome = ProcessOutcome(exit_code=proc.returncode, duration_ms=1)
    return run, *classify_outcome(outcome, run, 1, proc.stderr.decode())


@pytest.mark.parametrize(
    ("mode", "error_type", "reason", "retryable", "needle"),
    [
        ("auth_error", ErrorType.AGENT_AUTH, "authentication", False, "invalid x-api-key"),
        ("rate_limit", ErrorType.AGENT_CRASH, "rate_limit", True, "per-minute rate limit"),
        ("offline", ErrorType.AGENT_CRASH, "connection", True, "Cannot connect to API"),
    ],
)
def test_api_failures_are_classified(sample_repo, agent_home, mode, error_type, reason, retryable, needle):
    driver, inv = _invocation(sample_repo)
    proc = run_fake(inv.argv, sample_repo, inv.stdin, agent_home, ANTHROPIC_API_KEY="k", FAKE_AGENT_MODE=mode)
    assert proc.returncode == 1
    run, error, found = _classified(proc, driver)
    assert run.is_error and run.error_kind == "APIError" and run.session_id
    assert (error.type, found.reason, found.retryable) == (error_type, reason, retryable)
    assert needle in error.message and "opencode" not in (sample_repo / "mathlib.py").read_text()


def test_missing_credentials_name_the_cause_not_a_server_error(sample_repo, agent_home):
    driver, inv = _invocation(sample_repo)
    proc = run_fake(inv.argv, sample_repo, inv.stdin, agent_home)  # no ANTHROPIC_API_KEY
    assert json.loads(proc.stdout)["error"]["name"] == "UnknownError"  # all the stream says
    run, error, found = _classified(proc, driver)
    assert run.error_kind == "ProviderModelNotFoundError" and found.reason == "model_not_found"
    assert not found.retryable and error.type == ErrorType.AGENT_CRASH
    assert f"Model not found: {MODEL}" in error.message and "env_passthrough" in error.message


def test_command_line_errors_are_diagnosed(sample_repo, agent_home):
    driver, inv = _invocation(sample_repo, iteration=2, session="ses_0000000000000000000000gone")
    proc = run_fake(inv.argv, sample_repo, inv.stdin, agent_home, ANTHROPIC_API_KEY="k")
    run, error, _ = _classified(proc, driver)
    assert proc.returncode == 1 and error.type == ErrorType.AGENT_CRASH and "Session not found" in error.message
    assert "\x1b[" not in error.message

    driver, inv = _invocation(sample_repo, binary="opencode")
    proc = run_fake([*inv.argv, "--no-such-flag"], sample_repo, inv.stdin, agent_home, ANTHROPIC_API_KEY="k")
    run, error, found = _classified(proc, driver)
    assert proc.returncode == 1 and proc.stderr.decode().startswith("opencode run [message..]")
    assert found.reason == "invalid_arguments" and not found.retryable

    with pytest.raises(ValueError, match="provider/model"):
        _invocation(sample_repo, model="claude-sonnet-4-5")


def test_options_map_to_real_flags(sample_repo):
    _, inv = _invocation(sample_repo, agent="build", variant="high", auto_approve=True, print_logs=False)
    assert inv.argv == ["opencode", "run", "--format", "json", "--model", MODEL, "--agent", "build",
                        "--variant", "high", "--auto"]  # fmt: skip


def test_unknown_and_new_events_are_kept_not_fatal():
    from agentgate.agents.opencode import OpenCodeJsonParser

    parser = OpenCodeJsonParser()
    events = parser.feed("stdout", json.dumps({"type": "done", "timestamp": 1, "sessionID": "ses_x",
                                               "reason": "idle", "rejected": ["external_directory"]}))  # fmt: skip
    parser.feed("stdout", json.dumps({"type": "from_a_future_release", "sessionID": "ses_x"}))
    run = parser.finish()
    assert events[0].text == "permissions rejected: external_directory"
    assert run.unparsed_lines == 1 and run.session_id == "ses_x" and not run.is_error


# -- through the workflow ------------------------------------------------------------------


@pytest.fixture
def fake_opencode(monkeypatch, tmp_path):
    """The fake first on the worker's PATH and a HOME of its own (sessions live there)."""
    home = tmp_path / "agent-home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{FAKE_DIR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake-for-tests")
    monkeypatch.setenv("SECRET_THAT_MUST_NOT_LEAK", "x")
    log = fake_log(tmp_path)
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    return log


def _events(store: ArtifactStore, ctx: RunContext) -> list[dict]:
    return [json.loads(x) for x in store.read_text(ctx, "events.jsonl").splitlines()]


async def test_end_to_end_passes_after_two_iterations(skip_env, settings, sample_repo, fake_opencode):
    order = order_for(sample_repo, "opencode", model=MODEL, env_passthrough=["ANTHROPIC_API_KEY", "FAKE_AGENT_LOG"])
    outcome = await _run(skip_env, settings, order)

    assert outcome.result == "passed", outcome.error
    assert outcome.iterations == 2
    first, second = outcome.history
    assert not first.verification.passed and second.verification.passed
    assert first.feedback is not None and first.decision.startswith("continue")
    for rec in (first, second):
        agent = rec.agent
        assert agent.success and agent.model == MODEL and agent.turns == 4 and agent.tool_calls == 3
        assert agent.session_id.startswith("ses_") and agent.cost_usd > 0
        assert agent.tokens.input > 0 and agent.tokens.cache_read > 0 and agent.tokens.cache_creation > 0
    assert second.agent.session_id == first.agent.session_id  # --session continued it
    assert second.agent.final_message.startswith("Implemented `multiply`")
    assert outcome.tokens == first.agent.tokens + second.agent.tokens
    assert outcome.cost_usd == pytest.approx(first.agent.cost_usd + second.agent.cost_usd, abs=1e-6)

    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    a1, a2 = store.read_json(ctx, "agent-1.json"), store.read_json(ctx, "agent-2.json")
    assert "--session" not in a1["argv"] and a2["argv"][a2["argv"].index("--session") + 1] == first.agent.session_id
    assert [t["name"] for t in a2["tool_calls"]] == ["read", "edit", "bash"]
    assert a2["tool_calls"][2]["is_error"] is False and "OK" in a2["tool_calls"][2]["output"]  # tests pass now
    assert a2["tokens"] == second.agent.tokens.model_dump() and a2["cost_usd"] == second.agent.cost_usd
    assert a1["unparsed_lines"] == 0 and a2["unparsed_lines"] == 0 and a1["stop_reason"] is None
    raw = store.read_text(ctx, "agent-1.stdout.log").splitlines()
    assert json.loads(raw[0])["type"] == "step_start" and len(raw) == 13  # the transcript, line for line

    events = _events(store, ctx)
    tools = [e for e in events if e["type"] == "agent_tool_call"]
    assert [(e["iteration"], e["tool"]["name"]) for e in tools] == [
        (1, "read"),
        (1, "edit"),
        (1, "bash"),
        (2, "read"),
        (2, "edit"),
        (2, "bash"),
    ]
    usage = [e for e in events if e["type"] == "agent_usage" and e["iteration"] == 2]
    assert usage[-1]["cost_usd"] == pytest.approx(second.agent.cost_usd) and usage[-1]["turns"] == 4
    done = [e for e in events if e["type"] == "phase_completed" and e.get("phase") == "build"]
    assert [(d["model"], d["turns"], d["success"]) for d in done] == [(MODEL, 4, True), (MODEL, 4, True)]
    assert done[1]["tokens"] == second.agent.tokens.model_dump() and done[1]["cost_usd"] == second.agent.cost_usd

    calls = [json.loads(x) for x in fake_opencode.read_text().splitlines()]
    assert len(calls) == 2
    assert all("SECRET_THAT_MUST_NOT_LEAK" not in c["env"] and "ANTHROPIC_API_KEY" in c["env"] for c in calls)
    branch = subprocess.check_output(["git", "-C", str(sample_repo), "show", f"agentgate/{order.id}:mathlib.py"])
    assert b"return a + b" in branch and b"return a * b" in branch


async def test_auth_error_ends_failed_build_with_the_cli_message(skip_env, settings, sample_repo, fake_opencode,
                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setenv("FAKE_AGENT_MODE", "auth_error")
    names = ["ANTHROPIC_API_KEY", "FAKE_AGENT_MODE", "FAKE_AGENT_LOG"]
    outcome = await _run(skip_env, settings, order_for(sample_repo, "opencode", model=MODEL, env_passthrough=names))
    assert outcome.result == "failed_build" and outcome.iterations == 1
    assert outcome.build_error.type == ErrorType.AGENT_AUTH and "invalid x-api-key" in outcome.build_error.message
    assert len(fake_opencode.read_text().splitlines()) == 1  # not retried
    assert outcome.history[0].agent.session_id.startswith("ses_")


async def test_rate_limit_is_retried_by_temporal_then_fails(skip_env, settings, sample_repo, fake_opencode,
                                                            monkeypatch):  # fmt: skip
    monkeypatch.setenv("FAKE_AGENT_MODE", "rate_limit")
    names = ["ANTHROPIC_API_KEY", "FAKE_AGENT_MODE", "FAKE_AGENT_LOG"]
    outcome = await _run(skip_env, settings, order_for(sample_repo, "opencode", model=MODEL, env_passthrough=names))
    assert outcome.result == "failed_build"
    assert len(fake_opencode.read_text().splitlines()) == 3  # AGENT_RETRY: three attempts with backoff
    assert outcome.build_error.type == ErrorType.AGENT_CRASH and "rate limit" in outcome.build_error.message


async def test_iteration_timeout_salvages_the_partial_work(skip_env, settings, sample_repo, fake_opencode,
                                                           monkeypatch):  # fmt: skip
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang_after_edit")
    names = ["ANTHROPIC_API_KEY", "FAKE_AGENT_MODE", "FAKE_AGENT_LOG"]
    order = order_for(sample_repo, "opencode", model=MODEL, env_passthrough=names, iteration_timeout_seconds=3,
                      grace_seconds=1)  # fmt: skip
    outcome = await _run(skip_env, settings, order)

    assert outcome.result == "failed_build" and outcome.iterations == 1
    assert outcome.build_error.type == ErrorType.AGENT_TIMEOUT
    agent = outcome.history[0].agent
    assert agent.tool_calls == 2 and agent.turns == 2 and agent.tokens.total > 0  # what it did before the limit
    store = ArtifactStore(settings.runs_dir)
    record = store.read_json(RunContext(work_order_id=order.id, run_id=outcome.run_id), "agent-1.json")
    assert record["timed_out"] and record["survivors"] == [] and record["error"]["type"] == "agent_timeout"
    # Salvage: the edit made before the timeout is a commit on the run's branch, and the result says so.
    assert outcome.partial is True
    branch = f"agentgate/{order.id}"
    assert (
        outcome.delivery.commit
        == subprocess.check_output(["git", "-C", str(sample_repo), "rev-parse", branch], text=True).strip()
    )
    salvaged = subprocess.check_output(["git", "-C", str(sample_repo), "show", f"{branch}:mathlib.py"], text=True)
    assert "return a + b" in salvaged and 'raise NotImplementedError("multiply")' in salvaged


async def test_iteration_limit_keeps_the_work_on_the_branch(skip_env, settings, sample_repo, fake_opencode):
    order = order_for(sample_repo, "opencode", model=MODEL, env_passthrough=["ANTHROPIC_API_KEY"])
    order = order.model_copy(update={"max_iterations": 1})
    outcome = await _run(skip_env, settings, order)
    assert outcome.result == "failed_verification" and outcome.iterations == 1
    assert outcome.partial is True  # the last iteration's commit is the result, not thrown away
    branch = f"agentgate/{order.id}"
    assert (
        outcome.delivery.commit
        == subprocess.check_output(["git", "-C", str(sample_repo), "rev-parse", branch], text=True).strip()
    )
    assert "return a + b" in subprocess.check_output(
        ["git", "-C", str(sample_repo), "show", f"{branch}:mathlib.py"], text=True
    )
