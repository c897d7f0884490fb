"""Gates run the code the agent wrote, so the verify phase runs them sandboxed: no worker credentials,
nothing written outside the workspace, no network unless the order says `verify_network: full`.

Real parts: bubblewrap (skipped with its own reason where it cannot run), real gate commands through
the verification runner, a real HTTP server on the worker's 127.0.0.1, and the real WorkOrderWorkflow on
Temporal's test server. The fake worker HOME lives under /var/tmp, not /tmp: the sandbox's private /tmp
would hide anything under /tmp anyway, and the test must prove the *hiding* of credential stores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND
from agentgate.models import RunContext, VerificationSummary
from agentgate.sandbox.policy import SandboxPolicy
from agentgate.sandbox.providers import BubblewrapProvider
from agentgate.sandbox.verify_phase import GateSandbox, verify_policy
from agentgate.verification.plan import BlackBoxCheck, PlannedCommand
from agentgate.verification.runner import gate_environment, run_blackbox_check, run_command_check
from tests.conftest import DEMO_AGENT
from tests.fakes.loopback_http import serving
from tests.test_sandbox import needs_cgroups
from tests.test_workflow import make_order, run

BWRAP_OK, BWRAP_WHY = BubblewrapProvider().available()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap cannot run here: {BWRAP_WHY}")
KEY = "-----FAKE KEY 5c0ffee-for-test_sandbox_verify-----"


@pytest.fixture
def worker_home(monkeypatch):
    """A worker HOME with an ssh key, outside /tmp; the worker (this process) uses it as its HOME."""
    try:
        root = Path(tempfile.mkdtemp(prefix="agentgate-verify-", dir="/var/tmp"))
    except OSError as exc:
        pytest.skip(f"no writable /var/tmp for a fake worker HOME: {exc}")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(KEY)
    (home / "notes.txt").write_text("not a secret")
    monkeypatch.setenv("HOME", str(home))
    try:
        yield home
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server():
    with serving(b"reached the worker") as [port]:
        yield port


async def gate(tmp_path: Path, workspace: Path, run: str, sandbox: GateSandbox | None):
    log = tmp_path / f"gate-{abs(hash(run))}.log"
    env = gate_environment(str(workspace), 1, "wo-test")
    cmd = PlannedCommand(name="g", run=run, kind="test", origin="work_order", timeout=60)
    result = await run_command_check(cmd, workspace=str(workspace), env=env, log_path=log, log_ref=log.name,
                                     sandbox=sandbox)  # fmt: skip
    return result, log.read_text(errors="replace")


def sandbox_for(workspace: Path, order_policy: SandboxPolicy | None = None, provider: str = "auto") -> GateSandbox:
    return GateSandbox(workspace, order_policy=order_policy, home=workspace.parent / "run.home",
                       worker_home=os.environ["HOME"], default_provider=provider)  # fmt: skip


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    return ws


# -- the policy ------------------------------------------------------------------------------------


def test_verify_policy_is_hermetic_by_default_and_the_order_can_open_it():
    policy, source = verify_policy(None)
    assert (policy.provider, policy.network, policy.secrets, source) == ("auto", "none", [], "default (auto)")
    assert verify_policy(None, "bubblewrap")[0].provider == "bubblewrap"
    trusted, source = verify_policy(None, "none")  # AGENTGATE_SANDBOX_DEFAULT_PROVIDER=none covers gates too
    assert (trusted.provider, trusted.network, source) == ("none", "full", "default (none)")

    order = SandboxPolicy(network="full", secrets=["ANTHROPIC_API_KEY"], memory_mb=512)
    mine, source = verify_policy(order)
    assert (mine.network, mine.secrets, mine.memory_mb, source) == ("none", [], 512, "work order")
    assert verify_policy(order.model_copy(update={"verify_network": "full"}))[0].network == "full"
    listed = SandboxPolicy(network="allowlist", allow_hosts=["pypi.org"], verify_network="allowlist")
    assert verify_policy(listed)[0].allow_hosts == ["pypi.org"]
    assert verify_policy(SandboxPolicy(verify_network="allowlist"))[0].network == "none"  # nothing listed
    with pytest.raises(ValueError, match="choose one of"):
        verify_policy(None, "docker")


# -- gates inside the sandbox ----------------------------------------------------------------------


@needs_bwrap
async def test_a_gate_cannot_read_worker_credentials_or_write_outside_the_workspace(tmp_path, workspace,
                                                                                    worker_home):  # fmt: skip
    key, outside = worker_home / ".ssh" / "id_rsa", worker_home.parent / "planted.txt"
    steal = f"cat {key}; echo planted > {outside}; cat {worker_home}/notes.txt; echo $HOME"

    # Unsandboxed (the operator's `none`), the gate gets both: what the sandbox must prevent.
    result, out = await gate(tmp_path, workspace, steal, sandbox_for(workspace, provider="none"))
    assert KEY in out and outside.read_text() == "planted\n" and result.passed
    outside.unlink()

    sandbox = sandbox_for(workspace)
    assert (sandbox.provider, sandbox.network) == ("bubblewrap", "none")
    private_tmp = f"/tmp/agentgate-verify-{uuid.uuid4().hex}"  # unique: a stale one from another run proves nothing
    run = f"{steal}; echo ok > inside.txt; echo t > {private_tmp} && cat {private_tmp}"
    result, out = await gate(tmp_path, workspace, run, sandbox)
    assert KEY not in out and not outside.exists(), out
    assert "not a secret" in out  # the rest of the host stays readable; only credential stores are hidden
    assert "Read-only file system" in out or "Permission denied" in out, out
    assert str(workspace.parent / "run.home") in out  # a private HOME, not the worker's
    assert (workspace / "inside.txt").read_text() == "ok\n"  # the workspace is writable
    assert not Path(private_tmp).exists() and out.rstrip().endswith("t")  # a private /tmp

    # A script named by absolute path under /tmp (a test's tmp folder) is shown read-only; cwd is honoured.
    script = tmp_path / "check.sh"
    script.write_text("pwd; echo script-ran\n")
    result, out = await gate(tmp_path, workspace, f"cd sub && sh {script}", sandbox)
    assert result.passed and "script-ran" in out and str(workspace / "sub") in out, out
    cmd = PlannedCommand(
        name="sub", run="pwd && touch made-here", cwd="sub", kind="test", origin="work_order", timeout=60
    )
    log = tmp_path / "sub.log"
    done = await run_command_check(cmd, workspace=str(workspace), env=gate_environment(str(workspace), 1, "w"),
                                   log_path=log, log_ref="sub.log", sandbox=sandbox)  # fmt: skip
    assert done.passed and (workspace / "sub" / "made-here").exists(), log.read_text()


@needs_bwrap
async def test_a_black_box_check_gets_its_stdin_and_working_directory_inside_the_sandbox(tmp_path, workspace):
    check = BlackBoxCheck(run="pwd; tr a-z A-Z; echo $HOME >&2", stdin="hello", cwd="sub",
                          expect=[{"contains": "HELLO"}, {"contains": str(workspace / "sub")}])  # fmt: skip
    result = await run_blackbox_check(check, workspace=str(workspace), env=gate_environment(str(workspace), 1, "w"),
                                      out_path=tmp_path / "bb.out", err_path=tmp_path / "bb.err", out_ref="bb.out",
                                      sandbox=sandbox_for(workspace))  # fmt: skip
    assert result.passed, (result.message, result.excerpt)
    assert (tmp_path / "bb.err").read_text().strip() == str(workspace.parent / "run.home")


FETCH = (
    f'{sys.executable} -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read())"'
)


@needs_bwrap
async def test_gates_are_offline_unless_the_order_asks_for_the_network(tmp_path, workspace, server):
    url = f"http://127.0.0.1:{server}/"
    result, out = await gate(tmp_path, workspace, f"{FETCH} {url}", sandbox_for(workspace))
    assert not result.passed and "reached the worker" not in out, out

    opened = sandbox_for(workspace, SandboxPolicy(verify_network="full"))
    assert (opened.provider, opened.network, opened.record()["policy_source"]) == ("bubblewrap", "full", "work order")
    result, out = await gate(tmp_path, workspace, f"{FETCH} {url}", opened)
    assert result.passed and "reached the worker" in out, out


# -- through the workflow --------------------------------------------------------------------------


@needs_bwrap
async def test_a_planted_gate_script_runs_confined_and_the_run_still_passes(skip_env, settings, sample_repo,
                                                                          worker_home, tmp_path):  # fmt: skip
    """The agent appends to the module the tests import (as a planted conftest.py would) code that copies the
    worker's key into the workspace and plants a file outside it; the unchanged gate runs that code. Inside the
    sandbox both fail, and the gate itself still passes."""
    key, outside = worker_home / ".ssh" / "id_rsa", worker_home.parent / "planted.txt"
    payload = tmp_path / "payload.py"
    payload.write_text(
        "\ntry:\n"
        f"    _stolen = open({str(key)!r}).read()\n"
        "except OSError as exc:\n"
        "    _stolen = repr(exc)\n"
        "open('stolen.txt', 'w').write(_stolen)\n"
        "try:\n"
        f"    open({str(outside)!r}, 'w').write('planted')\n"
        "except OSError:\n"
        "    pass\n"
    )
    order = make_order(sample_repo, agent=f"{DEMO_AGENT} && cat {payload} >> mathlib.py")
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "passed", outcome.error
    workspace = settings.workspaces_dir / order.id / outcome.run_id
    stolen = (workspace / "stolen.txt").read_text()
    assert "Error" in stolen and KEY not in stolen and not outside.exists(), stolen  # it ran, and failed
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    for rec in outcome.history:
        summary: VerificationSummary = rec.verification
        assert (summary.sandbox_provider, summary.sandbox_network) == ("bubblewrap", "none")
        report = store.read_json(ctx, summary.report_ref)
        assert report["sandbox"]["provider"] == "bubblewrap" and report["sandbox"]["policy_source"] == "default (auto)"
    # The gates' HOME is the run's session home, which doctor and purge already know (`<run>.home`).
    assert (settings.workspaces_dir / order.id / f"{outcome.run_id}.home").is_dir()


async def test_the_operator_can_turn_gate_sandboxing_off(skip_env, settings, sample_repo, worker_home):
    settings = settings.model_copy(update={"sandbox_default_provider": "none"})
    order = make_order(sample_repo, gate=f"cat {worker_home}/.ssh/id_rsa > /dev/null && {GATE_COMMAND}")
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "passed", outcome.error
    assert {(r.verification.sandbox_provider, r.verification.sandbox_network) for r in outcome.history} == {
        ("none", "full")
    }


GATE_FORK_BOMB = (
    "import os, sys, time\n"
    "try:\n"
    "    for n in range(10_000):\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(60)\n"
    "            os._exit(0)\n"
    "except OSError as exc:\n"
    "    print(f'fork failed: {exc}', file=sys.stderr)\n"
    "    sys.exit(1)\n"
)


@needs_bwrap
@needs_cgroups
async def test_a_gate_stopped_by_a_resource_limit_says_which(tmp_path, workspace):
    """A test suite the agent turned into a fork bomb fails as `resource_exceeded`, naming the limit, so the
    feedback tells the agent what happened instead of an unexplained exit code."""
    (workspace / "bomb.py").write_text(GATE_FORK_BOMB)
    result, out = await gate(tmp_path, workspace, f"{sys.executable} bomb.py",
                             sandbox_for(workspace, SandboxPolicy(pids=64)))  # fmt: skip
    assert not result.passed and "fork failed" in out
    assert result.message.startswith("resource_exceeded: pids limit 64"), result.message

    # The same gate with no limit hit reads as an ordinary failure, without the label.
    (workspace / "fails.py").write_text("import sys; sys.exit(3)\n")
    result, _ = await gate(tmp_path, workspace, f"{sys.executable} fails.py", sandbox_for(workspace))
    assert result.message == "exit code 3, expected 0", result.message
