"""Sandboxed and offline by default: the policy an agent gets when its work order names none, the private
HOME the CLIs keep their sessions in, and the delivery token that reaches delivery and nothing else.

Real parts throughout: bubblewrap where it runs (otherwise the `auto` fallback is what is checked), real
HTTP servers on 127.0.0.1 outside the sandbox, the real workflow on Temporal's test server, the fake
GitHub over real HTTP, and the real agent CLIs when scripts/install-agent-clis.sh has installed them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentgate.artifacts import ArtifactStore
from agentgate.config import Settings
from agentgate.demo.sample_repo import GATE_COMMAND
from agentgate.models import AgentSpec, RunContext
from agentgate.process import run_streaming
from agentgate.sandbox.agent_phase import agent_policy, named_files, wrap_agent
from agentgate.sandbox.defaults import base_url_hosts, default_policy, runnable
from agentgate.sandbox.policy import PROVIDER_API_HOSTS, SandboxPolicy
from agentgate.sandbox.providers import BubblewrapProvider
from tests.conftest import DEMO_AGENT
from tests.fakes import delivery_fixtures as fx
from tests.fakes.delivery_fixtures import scan_for_secret
from tests.fakes.github_server import CI, FakeGitHub
from tests.fakes.loopback_http import serving
from tests.test_workflow import make_order, run
from tests.test_workflow_delivery import script_by_push_order

BWRAP_OK, BWRAP_WHY = BubblewrapProvider().available()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap cannot run here: {BWRAP_WHY}")
CLI_BIN = Path(__file__).resolve().parent.parent / ".agent-clis" / "node_modules" / ".bin"
gh_token = fx.gh_token


@pytest.fixture
def servers():
    """Two HTTP servers on the worker's loopback: one the agent is told about, one it is not."""
    with serving(b"hello from the worker side", count=2) as ports:
        yield ports


# -- the policy --------------------------------------------------------------------------------


def test_default_policy_per_agent():
    command = default_policy("command", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert (command.provider, command.network, command.allow_hosts) == ("auto", "none", [])

    claude = default_policy("claude-code", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:4010/v1", "PATH": "/bin"})
    assert claude.network == "allowlist"
    assert claude.allow_hosts == [*PROVIDER_API_HOSTS["claude-code"], "127.0.0.1:4010"]

    codex = default_policy("codex", {}, options={"config": {"openai_base_url": "https://gw.example.com/v1"}})
    assert codex.allow_hosts == [*PROVIDER_API_HOSTS["codex"], "gw.example.com"]

    config = {"provider": {"anthropic": {"options": {"baseURL": "http://[::1]:8080/v1"}}}}
    opencode = default_policy("opencode", {"OPENCODE_CONFIG_CONTENT": json.dumps(config)})
    assert opencode.allow_hosts[-1] == "[::1]:8080" and "api.anthropic.com" in opencode.allow_hosts

    trusted = default_policy("claude-code", {}, provider="none")
    assert (trusted.provider, trusted.network) == ("none", "full")
    with pytest.raises(ValueError, match="choose one of"):
        default_policy("command", {}, provider="docker")
    assert base_url_hosts({"OPENAI_BASE_URL": "not a url", "X_BASE_URL": "ftp://h/"}) == []


def test_an_order_allowlist_keeps_the_model_provider_and_command_scripts_stay_visible(tmp_path):
    order = SandboxPolicy(network="allowlist", allow_hosts=["pypi.org"])
    policy, source, _ = agent_policy(order, "claude-code", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:5"})
    assert source == "work order"
    assert policy.allow_hosts == ["pypi.org", *PROVIDER_API_HOSTS["claude-code"], "127.0.0.1:5"]
    assert agent_policy(order, "command", {})[0].allow_hosts == ["pypi.org"]

    script = tmp_path / "agent.sh"
    script.write_text("echo hi")
    cmd = f"/bin/sh {script} --log={script} {tmp_path} /nonexistent/x"
    assert named_files(["/bin/sh", "-c", cmd]) == [os.path.realpath("/bin/sh"), str(script)]
    assert named_files(["claude", "-p"]) == []


def test_operator_setting_chooses_the_default_provider(monkeypatch):
    assert Settings().sandbox_default_provider == "auto"
    monkeypatch.setenv("AGENTGATE_SANDBOX_DEFAULT_PROVIDER", "none")
    assert Settings().sandbox_default_provider == "none"
    monkeypatch.setenv("AGENTGATE_SANDBOX_DEFAULT_PROVIDER", "chroot")
    with pytest.raises(ValidationError, match="sandbox_default_provider"):
        Settings()


def test_without_an_isolating_provider_the_default_allowlist_is_widened_and_says_so():
    policy = default_policy("claude-code", {})
    missing = BubblewrapProvider(bwrap="/nonexistent/bwrap").available
    widened, warnings = runnable(policy, missing)
    assert (widened.network, widened.allow_hosts) == ("full", [])
    assert "NOT enforced" in warnings[0] and "not found on PATH" in warnings[0]
    # An order's own allowlist is never widened: that one fails closed (SandboxConfigError / unavailable).
    strict = policy.model_copy(update={"allow_unsandboxed": False})
    assert runnable(strict, missing) == (strict, [])


def test_the_delivery_token_is_refused_for_the_agent():
    with pytest.raises(ValidationError, match="delivery token"):
        SandboxPolicy(secrets=["AGENTGATE_GITHUB_TOKEN"])
    with pytest.raises(ValidationError, match="env_passthrough names GITHUB_TOKEN, the delivery token"):
        AgentSpec(driver="command", command="true", options={"env_passthrough": ["PATH", "GITHUB_TOKEN"]})


# -- one agent run, as the build activity wraps it ----------------------------------------------


async def _wrapped_run(tmp_path: Path, driver: str, argv: list[str], env: dict[str, str], **kw):
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    wrapped = wrap_agent(argv, driver=driver, workspace=workspace, env=env, order_policy=kw.pop("policy", None),
                         run_dir=run_dir, session_home=tmp_path / "session-home", **kw)  # fmt: skip
    try:
        outcome = await run_streaming(wrapped.argv, cwd=workspace, env=wrapped.env, stdout_path=tmp_path / "out",
                                      stderr_path=tmp_path / "err", timeout_seconds=60)  # fmt: skip
        evidence = wrapped.evidence()
    finally:
        wrapped.cleanup()
    return outcome, wrapped, evidence, (tmp_path / "out").read_text(), (tmp_path / "err").read_text()


PROBE = """import os, sys, urllib.request
for port in sys.argv[1:]:
    try:
        print(port, urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode())
    except Exception as exc:
        print(port, "refused:", type(exc).__name__)
home = os.environ["HOME"]
os.makedirs(f"{home}/.claude", exist_ok=True)
open(f"{home}/.claude/session.jsonl", "w").write("resume me")
open(f"{home}/.claude.json", "w").write("{}")
print("credentials:", open(f"{home}/.claude/.credentials.json").read())
print("history:", os.path.exists(os.environ["WORKER_HOME"] + "/.claude/history.jsonl"))
"""


@needs_bwrap
async def test_llm_cli_default_reaches_only_its_configured_endpoint_and_writes_a_private_home(
    tmp_path, servers, monkeypatch
):
    told, other = servers
    worker_home = tmp_path / "worker-home"
    (worker_home / ".claude").mkdir(parents=True)
    (worker_home / ".claude" / ".credentials.json").write_text("subscription-login")
    (worker_home / ".claude" / "history.jsonl").write_text("another project's transcript")
    env = {"PATH": os.environ["PATH"], "HOME": str(worker_home), "WORKER_HOME": str(worker_home),
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{told}"}  # fmt: skip
    argv = [sys.executable, "-c", PROBE, str(told), str(other)]
    outcome, wrapped, evidence, out, err = await _wrapped_run(tmp_path, "claude-code", argv, env)

    assert outcome.exit_code == 0, err
    record = wrapped.record()
    assert (record["provider"], record["network"], record["policy_source"]) == ("bubblewrap", "allowlist",
                                                                                "default (auto)")  # fmt: skip
    assert f"{told} hello from the worker side" in out  # the configured base URL, through the proxy
    assert f"{other} refused" in out and f"127.0.0.1:{other}" in evidence["network_denied"]
    assert "credentials: subscription-login" in out  # the login, read-only, linked into the private HOME
    assert "history: False" in out  # the rest of the worker's CLI state is hidden
    home = tmp_path / "session-home"
    assert (home / ".claude" / "session.jsonl").read_text() == "resume me"
    assert (home / ".claude.json").exists() and not (worker_home / ".claude.json").exists()
    assert (worker_home / ".claude" / ".credentials.json").read_text() == "subscription-login"
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == []  # nothing landed in the workspace


async def test_trusted_local_use_runs_plainly_with_the_worker_home(tmp_path, servers):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    argv = [sys.executable, "-c", "import os; print(os.environ['HOME'])"]
    outcome, wrapped, _, out, _ = await _wrapped_run(tmp_path, "claude-code", argv, env, default_provider="none")
    assert outcome.exit_code == 0 and out.strip() == str(tmp_path)
    assert (wrapped.provider, wrapped.network, wrapped.policy_source) == ("none", "full", "default (none)")
    assert not (tmp_path / "session-home").exists()


@pytest.mark.skipif(not (CLI_BIN / "claude").exists(), reason="real agent CLIs not installed")
@pytest.mark.parametrize(("driver", "cli"), [("claude-code", "claude"), ("codex", "codex"), ("opencode", "opencode")])
async def test_real_cli_starts_inside_the_default_sandbox(tmp_path, driver, cli):
    if not (CLI_BIN / cli).exists():
        pytest.skip(f"{cli} not installed")
    env = {"PATH": f"{CLI_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "worker-home")}
    outcome, wrapped, _, out, err = await _wrapped_run(tmp_path, driver, [cli, "--version"], env)
    assert outcome.exit_code == 0, err
    assert any(ch.isdigit() for ch in out), out
    assert wrapped.provider == ("bubblewrap" if BWRAP_OK else "none")


# -- through the workflow ----------------------------------------------------------------------

NET_PROBE = (
    f'{sys.executable} -c "import socket,sys; s=socket.socket(); s.settimeout(5); '
    f"r=s.connect_ex(('127.0.0.1', int(sys.argv[1]))); print('reached' if r == 0 else 'offline')\""
)


async def test_default_run_is_sandboxed_offline_and_recorded(skip_env, settings, sample_repo, servers):
    order = make_order(sample_repo, agent=f"{DEMO_AGENT} && {NET_PROBE} {servers[0]}")
    assert order.sandbox is None
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "passed", outcome.error
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    record = store.read_json(ctx, "agent-1.json")["sandbox"]
    provider = "bubblewrap" if BWRAP_OK else "none"
    assert record["provider"] == provider and record["policy_source"] == "default (auto)"
    for rec in outcome.history:  # per iteration, in the summary the API serves
        assert (rec.agent.sandbox_provider, rec.agent.sandbox_network) == (provider, record["network"])
    stdout = store.read_text(ctx, "agent-1.stdout.log")
    if BWRAP_OK:
        assert record["network"] == "none" and "offline" in stdout
    else:
        assert "auto found no isolating provider: running unsandboxed" in record["warnings"]


@pytest.fixture
def bare_remote(tmp_path: Path, sample_repo: Path) -> Path:
    bare = tmp_path / "remote" / "demo.git"
    bare.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "-C", str(sample_repo), "push", "-q", str(bare), "main"], check=True)
    return bare


ENV_DUMP = f"{sys.executable} -c \"import os; open('agent-env.txt', 'w').write(repr(sorted(os.environ.items())))\""


async def test_the_github_token_reaches_delivery_only(skip_env, settings, sample_repo, bare_remote, gh_token,
                                                      monkeypatch):  # fmt: skip
    fake = FakeGitHub(gh_token, owner="octo", repo="demo", default_branch="main", bare_repo=bare_remote).start()
    try:
        monkeypatch.setenv("AGENTGATE_GITHUB_TOKEN", gh_token)
        monkeypatch.setenv("GITHUB_TOKEN", gh_token)
        monkeypatch.setenv("AGENTGATE_GITHUB_API_URL", fake.base_url)
        script_by_push_order(fake, CI.green())
        # The agent records its whole environment in the workspace (delivered with the branch);
        # the gate fails if its own environment holds the token.
        spec = {"mode": "github-pr", "owner": "octo", "repo": "demo", "ci": {"poll_interval_seconds": 1}}
        no_token = '[ -z "$AGENTGATE_GITHUB_TOKEN$GITHUB_TOKEN" ]'
        order = make_order(sample_repo, agent=f"{DEMO_AGENT} && {ENV_DUMP}", gate=f"{no_token} && {GATE_COMMAND}",
                           delivery=spec)  # fmt: skip
        outcome = await run(skip_env, settings, order)
    finally:
        fake.stop()

    assert outcome.result == "passed", (outcome.error, outcome.warnings)
    assert outcome.delivery.pushed and outcome.delivery.pr_number == 1  # delivery had the token
    branch = f"agentgate/{order.id}"
    dumped = subprocess.check_output(["git", "-C", str(bare_remote), "show", f"{branch}:agent-env.txt"], text=True)
    assert "GITHUB_TOKEN" not in dumped and gh_token not in dumped and "AGENTGATE_PROMPT_FILE" in dumped
    workspace = settings.workspaces_dir / order.id / outcome.run_id
    git_config = (workspace / ".git" / "config").read_text()
    assert gh_token not in git_config and "extraheader" not in git_config.lower()
    assert scan_for_secret(settings.home_dir, gh_token) == []


# -- other runs and the service's own state are not visible ----------------------------------------------

STATE_PROBE = """import os, pathlib, sys
other, db = OTHER, DB
def seen(path):
    try:
        return "read" if pathlib.Path(path).read_text() else "empty"
    except OSError as exc:
        return type(exc).__name__
prompt = os.environ["AGENTGATE_PROMPT_FILE"]
pathlib.Path("probe.txt").write_text(f"other={seen(other)} db={seen(db)} prompt={seen(prompt)}\\n")
"""


@needs_bwrap
async def test_agents_and_gates_see_no_other_run_and_no_service_state(skip_env, tmp_path, sample_repo):
    """A home outside /tmp (the private /tmp would hide one under it anyway, proving nothing)."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="agentgate-home-", dir="/var/tmp"))
    try:
        settings = Settings(home=home, task_queue=f"q-{os.getpid()}-{id(home)}", host_id="host-state",
                            agent_grace_seconds=2, heartbeat_seconds=1)  # fmt: skip
        other = settings.runs_dir / "wo_01othertenant0000000000000" / "run-1" / "agent-1.stdout.log"
        other.parent.mkdir(parents=True)
        other.write_text("another tenant's transcript\n")
        db = settings.home_dir / "temporal.db"
        db.write_text("every workflow history\n")
        # The paths live inside the scripts: files a command names by absolute path are made visible on purpose.
        script, gate_script = tmp_path / "probe.py", tmp_path / "gate.py"
        script.write_text(f"OTHER, DB = {str(other)!r}, {str(db)!r}\n" + STATE_PROBE)
        gate_script.write_text(
            f"import os, sys\nsys.exit(1 if os.path.exists({str(other)!r}) or os.path.exists({str(db)!r}) else 0)\n"
        )
        gate = f"{sys.executable} {gate_script} && test -f probe.txt"
        order = make_order(sample_repo, agent=f"{sys.executable} {script}", gate=gate, max_iterations=1)
        outcome = await run(skip_env, settings, order)
        ws = settings.workspaces_dir / order.id / outcome.run_id
        logs = {p.name: p.read_text()[-800:] for p in (settings.runs_dir / order.id / outcome.run_id).glob("*")
                if p.suffix in (".log", ".json")}  # fmt: skip
        logs["probe"] = (ws / "probe.txt").read_text() if (ws / "probe.txt").exists() else None
        assert outcome.result == "passed", (outcome.error, logs)  # the gate could not see them either
        probe = (settings.workspaces_dir / order.id / outcome.run_id / "probe.txt").read_text().split()
        assert probe[0] in ("other=FileNotFoundError", "other=PermissionError"), probe
        assert probe[1] in ("db=FileNotFoundError", "db=PermissionError"), probe
        assert probe[2] == "prompt=read", probe  # its own run folder stays readable
    finally:
        shutil.rmtree(home, ignore_errors=True)
