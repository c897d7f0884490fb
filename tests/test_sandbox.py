"""Sandbox providers proven from inside real sandboxed processes, started by the real `run_streaming`.

Each sandboxed command is a small Python program that tries the forbidden thing and prints what
happened as JSON; the test reads that report (and the host afterwards). Tests that need bwrap,
or a writable cgroup, skip with the exact reason the provider gives.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from agentgate.process import run_streaming
from agentgate.sandbox import (
    BubblewrapProvider,
    ContainerProvider,
    NoneProvider,
    Redactor,
    SandboxConfigError,
    SandboxPolicy,
    classify_exit,
    resolve_secrets,
    select_provider,
    wrap_command,
)
from agentgate.sandbox.limits import cgroup_support

pytestmark = pytest.mark.timeout(60)

BWRAP_OK, BWRAP_WHY = BubblewrapProvider().available()
CGROUP_VERSION, CGROUP_WHY = cgroup_support()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bubblewrap unavailable: {BWRAP_WHY}")
needs_cgroups = pytest.mark.skipif(CGROUP_VERSION == 0, reason=f"no writable cgroups: {CGROUP_WHY}")
PY = sys.executable


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def fake_home():
    """A HOME outside /tmp (the sandbox's /tmp is private, which would hide it for the wrong reason)."""
    home = Path(tempfile.mkdtemp(prefix="agentgate-home-", dir="/var/tmp"))
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("FAKE-PRIVATE-KEY-MATERIAL\n")
    (home / ".gitconfig").write_text("[user]\n\tname = visible\n")
    yield home
    shutil.rmtree(home, ignore_errors=True)


class Run:
    def __init__(self, outcome, stdout: str, stderr: str, wrapped, evidence) -> None:
        self.outcome, self.stdout, self.stderr, self.wrapped, self.evidence = outcome, stdout, stderr, wrapped, evidence

    def report(self) -> dict:
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no report from inside the sandbox; stderr:\n{self.stderr[-2000:]}"
        return json.loads(lines[-1])


async def sandboxed(
    provider,
    code: str,
    *,
    workspace: Path,
    env: dict[str, str],
    policy: SandboxPolicy,
    secrets: dict[str, str] | None = None,
    timeout: float = 30,
) -> Run:
    wrapped = provider.wrap(
        [PY, "-c", textwrap.dedent(code)], workspace=workspace, env=env, policy=policy, secrets=secrets
    )
    logs = workspace.parent / f"logs-{uuid.uuid4().hex[:6]}"
    try:
        outcome = await run_streaming(
            wrapped.argv,
            cwd=workspace,
            env=wrapped.env,
            stdout_path=logs / "stdout.log",
            stderr_path=logs / "stderr.log",
            timeout_seconds=timeout,
            grace_seconds=2,
        )
        evidence = wrapped.evidence()
    finally:
        wrapped.cleanup()
    return Run(outcome, (logs / "stdout.log").read_text(), (logs / "stderr.log").read_text(), wrapped, evidence)


# ---------------------------------------------------------------------------------------------- isolation


@needs_bwrap
async def test_write_outside_workspace_fails(workspace: Path, fake_home: Path) -> None:
    escape = Path(__file__).resolve().parent / f".sandbox-escape-{uuid.uuid4().hex}"
    (workspace / ".git" / "hooks").mkdir(parents=True)
    (workspace / ".git" / "config").write_text("[core]\n")
    code = f"""
        import json, os
        out = {{}}
        for name, path in [("workspace", "inside.txt"), ("repo", {str(escape)!r}), ("etc", "/etc/agentgate-escape"),
                           ("home", {str(fake_home / "escape")!r}), ("git_config", ".git/config"),
                           ("git_hook", ".git/hooks/post-commit")]:
            try:
                with open(path, "w") as fh:
                    fh.write("x")
                out[name] = "written"
            except OSError as exc:
                out[name] = exc.strerror
        print(json.dumps(out))
    """
    run = await sandboxed(
        BubblewrapProvider(), code, workspace=workspace, env=base_env(fake_home), policy=SandboxPolicy()
    )
    report = run.report()
    assert report["workspace"] == "written" and (workspace / "inside.txt").read_text() == "x"
    for name in ("repo", "etc", "home", "git_config", "git_hook"):
        assert report[name] == "Read-only file system", report
    assert not escape.exists() and not Path("/etc/agentgate-escape").exists()
    assert not (fake_home / "escape").exists()
    assert (workspace / ".git" / "config").read_text() == "[core]\n"


@needs_bwrap
async def test_ssh_keys_and_worker_environment_are_out_of_reach(
    workspace: Path, fake_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_secret = f"worker-only-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTGATE_TEST_WORKER_ONLY", worker_secret)
    code = f"""
        import json, os
        home = os.environ["HOME"]
        out = {{"home": home}}
        try:
            out["id_rsa"] = open(os.path.join(home, ".ssh/id_rsa")).read()
        except OSError as exc:
            out["id_rsa"] = "error: " + exc.strerror
        try:
            out["root_ssh"] = sorted(os.listdir("/root/.ssh"))
        except OSError as exc:
            out["root_ssh"] = "error: " + exc.strerror
        out["gitconfig_visible"] = os.path.exists(os.path.join(home, ".gitconfig"))
        out["env_has_var"] = "AGENTGATE_TEST_WORKER_ONLY" in os.environ
        seen = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if {worker_secret!r}.encode() in open(f"/proc/{{pid}}/environ", "rb").read():
                        seen.append(pid)
                except OSError:
                    pass
        out["proc_environ_hits"] = seen
        out["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print(json.dumps(out))
    """
    run = await sandboxed(
        BubblewrapProvider(), code, workspace=workspace, env=base_env(fake_home), policy=SandboxPolicy()
    )
    report = run.report()
    assert report["home"] == str(fake_home)
    assert report["gitconfig_visible"] is True  # HOME itself is there, only its credentials are not
    assert report["id_rsa"].startswith("error:"), report
    if os.path.isdir("/root/.ssh"):
        assert report["root_ssh"] == [], report
    assert report["env_has_var"] is False and report["proc_environ_hits"] == []
    assert max(report["visible_pids"]) < 10, "own PID namespace: the worker's processes are not visible"


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


DAEMON_CODE = """
    import json, os, subprocess, time
    # A daemon that leaves the session and the process group: only the PID namespace still holds it.
    subprocess.Popen(["setsid", "sleep", MARKER], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 5
    seen = False
    while not seen and time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                seen = seen or MARKER.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                pass
        time.sleep(0.02)
    print(json.dumps({"daemon_running": seen}), flush=True)
    time.sleep(SLEEP)
"""


@needs_bwrap
@pytest.mark.parametrize("ending", ["exits", "times_out"])
async def test_process_tree_dies_with_the_sandbox(ending: str, workspace: Path, fake_home: Path) -> None:
    marker = f"{4000 + os.getpid() % 1000}.{uuid.uuid4().int % 10**6}"
    code = DAEMON_CODE.replace("MARKER", repr(marker)).replace("SLEEP", "0" if ending == "exits" else "60")
    run = await sandboxed(
        BubblewrapProvider(),
        code,
        workspace=workspace,
        env=base_env(fake_home),
        policy=SandboxPolicy(),
        timeout=30 if ending == "exits" else 2,
    )
    assert run.report()["daemon_running"] is True
    assert run.outcome.timed_out is (ending == "times_out")
    assert run.outcome.survivors == []
    await asyncio.sleep(0.2)
    assert _processes_with(marker) == []


# ---------------------------------------------------------------------------------------------- network


@pytest.fixture
async def echo_server():
    """A TCP server on the host's 127.0.0.1, outside any sandbox."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readline()
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


CONNECT_CODE = """
    import json, socket
    out = {}
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        s.sendall(b"ping\\n")
        out["reply"] = s.recv(100).decode()
    except OSError as exc:
        out["error"] = exc.strerror or str(exc)
    print(json.dumps(out))
"""


@needs_bwrap
@pytest.mark.parametrize("network", ["none", "full"])
async def test_network_to_host_loopback(network: str, echo_server: int, workspace: Path, fake_home: Path) -> None:
    code = CONNECT_CODE.replace("PORT", str(echo_server))
    run = await sandboxed(
        BubblewrapProvider(), code, workspace=workspace, env=base_env(fake_home), policy=SandboxPolicy(network=network)
    )
    report = run.report()
    if network == "none":
        assert "reply" not in report and "refused" in report["error"].lower(), report
    else:
        assert report == {"reply": "pong:ping\n"}


@needs_bwrap
async def test_network_allowlist_through_the_filtering_proxy(
    echo_server: int, workspace: Path, fake_home: Path
) -> None:
    code = f"""
        import json, os, socket
        proxy = os.environ["HTTPS_PROXY"].rsplit(":", 1)
        def tunnel(port):
            s = socket.create_connection((proxy[0][7:], int(proxy[1])), timeout=5)
            s.sendall(f"CONNECT 127.0.0.1:{{port}} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n".encode())
            status = s.recv(200).split(b"\\r\\n")[0].decode()
            if " 200 " not in status + " ":
                return status
            s.sendall(b"ping\\n")
            return status + " | " + s.recv(100).decode()
        out = {{"allowed": tunnel({echo_server}), "denied": tunnel({echo_server + 1 if echo_server < 65535 else 1})}}
        try:
            socket.create_connection(("127.0.0.1", {echo_server}), timeout=5)
            out["direct"] = "connected"
        except OSError as exc:
            out["direct"] = exc.strerror
        print(json.dumps(out))
    """
    policy = SandboxPolicy(network="allowlist", allow_hosts=[f"127.0.0.1:{echo_server}"])
    run = await sandboxed(BubblewrapProvider(), code, workspace=workspace, env=base_env(fake_home), policy=policy)
    report = run.report()
    assert report["allowed"].startswith("HTTP/1.1 200") and report["allowed"].endswith("pong:ping\n"), report
    assert report["denied"].startswith("HTTP/1.1 403"), report
    assert "refused" in report["direct"].lower()
    assert run.evidence["network_denied"] and run.evidence["network_allowed"] == [f"127.0.0.1:{echo_server}"]


def test_allowlist_is_refused_where_it_cannot_be_enforced() -> None:
    policy = SandboxPolicy(network="allowlist", allow_hosts=["api.anthropic.com"], image="agent:latest")
    with pytest.raises(SandboxConfigError):
        NoneProvider().wrap(["true"], workspace="/tmp", env={}, policy=policy)
    with pytest.raises(SandboxConfigError):
        ContainerProvider("docker").build_argv(["true"], workspace="/w", env_names=[], policy=policy, name="x")
    with pytest.raises(ValueError):
        SandboxPolicy(network="allowlist")


# ---------------------------------------------------------------------------------------------- limits

FORK_BOMB = """
    import os, sys, time
    n = 0
    try:
        for n in range(10_000):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
    except OSError as exc:
        print(f"fork failed after {n} children: {exc}", file=sys.stderr)
        sys.exit(1)
    print("the fork bomb was not stopped")
"""


@needs_bwrap
@needs_cgroups
async def test_fork_bomb_is_stopped_by_the_pid_limit(workspace: Path, fake_home: Path) -> None:
    policy = SandboxPolicy(pids=64)
    run = await sandboxed(BubblewrapProvider(), FORK_BOMB, workspace=workspace, env=base_env(fake_home), policy=policy)
    assert "fork failed" in run.stderr and "not stopped" not in run.stdout
    assert run.outcome.exit_code == 1 and not run.outcome.timed_out
    assert run.evidence["pids_max_events"] > 0
    assert classify_exit(run.outcome.exit_code, None, run.stderr, policy, run.evidence) == "pids limit 64"


MEMORY_HOG = """
    chunks = []
    for _ in range(64):
        chunks.append(b"x" * (32 * 1024 * 1024))
    print("the memory hog was not stopped")
"""


@needs_bwrap
@pytest.mark.parametrize("mechanism", ["cgroup", "rlimit"])
async def test_memory_hog_is_stopped_by_the_memory_limit(mechanism: str, workspace: Path, fake_home: Path) -> None:
    if mechanism == "cgroup" and CGROUP_VERSION == 0:
        pytest.skip(f"no writable cgroups: {CGROUP_WHY}")
    policy = SandboxPolicy(memory_mb=128)
    provider = BubblewrapProvider(cgroups=mechanism == "cgroup")
    run = await sandboxed(provider, MEMORY_HOG, workspace=workspace, env=base_env(fake_home), policy=policy)
    assert "not stopped" not in run.stdout and run.outcome.exit_code != 0
    if mechanism == "cgroup":
        assert run.outcome.exit_code == 128 + signal.SIGKILL and run.evidence["memory_oom_kills"] > 0
    else:
        assert "MemoryError" in run.stderr
    assert classify_exit(run.outcome.exit_code, None, run.stderr, policy, run.evidence) == "memory limit 128 MB"


@needs_bwrap
async def test_cpu_and_file_size_limits_are_classified(workspace: Path, fake_home: Path) -> None:
    policy = SandboxPolicy(cpu_seconds=1, disk_mb=2)
    env = base_env(fake_home)
    spin = await sandboxed(BubblewrapProvider(), "while True: pass", workspace=workspace, env=env, policy=policy)
    assert spin.outcome.exit_code == 128 + signal.SIGXCPU
    assert classify_exit(spin.outcome.exit_code, None, spin.stderr, policy, spin.evidence) == "cpu limit 1 s"
    big = await sandboxed(
        BubblewrapProvider(),
        "open('big.bin', 'wb').write(b'x' * (8 * 1024 * 1024))",
        workspace=workspace,
        env=env,
        policy=policy,
    )
    assert "File too large" in big.stderr and (workspace / "big.bin").stat().st_size <= 2 * 1024 * 1024
    assert classify_exit(big.outcome.exit_code, None, big.stderr, policy, big.evidence) == "disk limit 2 MB"


def test_classify_exit_without_evidence_reads_signals_and_stderr() -> None:
    policy = SandboxPolicy(memory_mb=256, pids=64, cpu_seconds=5, disk_mb=100)
    assert classify_exit(1, None, "BlockingIOError: [Errno 11] Resource temporarily unavailable", policy) == (
        "pids limit 64"
    )
    assert classify_exit(-signal.SIGXCPU, None, "", policy) == "cpu limit 5 s"
    assert classify_exit(1, None, "FATAL ERROR: JavaScript heap out of memory", policy) == "memory limit 256 MB"
    assert classify_exit(0, None, "", policy) is None
    assert classify_exit(1, None, "AssertionError", policy) is None
    assert classify_exit(1, None, "Resource temporarily unavailable", SandboxPolicy()) is None
    # With cgroup evidence saying nothing was hit, stderr guesses are not trusted.
    assert classify_exit(1, None, "Resource temporarily unavailable", policy, {"pids_max_events": 0}) is None


# ---------------------------------------------------------------------------------------------- secrets


@needs_bwrap
async def test_secret_printed_by_the_agent_is_redacted_in_every_persisted_file(
    workspace: Path, fake_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGENTGATE_TEST_API_KEY", secret)
    policy = SandboxPolicy(secrets=["AGENTGATE_TEST_API_KEY"])
    secrets = resolve_secrets(policy)
    code = """
        import hashlib, json, os, sys
        key = os.environ["AGENTGATE_TEST_API_KEY"]
        print("digest", hashlib.sha256(key.encode()).hexdigest())
        print("the key is", key)
        print("error with key", key, "and ghp_" + "A" * 36, file=sys.stderr)
        print(json.dumps({"key": key}))
    """
    run = await sandboxed(
        BubblewrapProvider(), code, workspace=workspace, env=base_env(fake_home), policy=policy, secrets=secrets
    )
    # The log is redacted on its way to disk (agentgate.artifacts), so the digest proves the secret arrived.
    assert hashlib.sha256(secret.encode()).hexdigest() in run.stdout, "the agent phase did receive its secret"
    assert secret not in run.stdout and "[REDACTED]" in run.stdout
    assert all(secret not in arg for arg in run.wrapped.argv), "secret values never go on a command line"
    assert run.wrapped.record()["secrets"] == ["AGENTGATE_TEST_API_KEY"]

    redactor = Redactor.from_env(policy.secrets)
    logs = [p for p in workspace.parent.glob("logs-*/*.log")]
    for path in logs:
        redactor.redact_file(path)
    record = workspace.parent / "agent-1.json"
    record.write_text(json.dumps(redactor.redact_obj({"stdout_excerpt": run.stdout, "stderr_excerpt": run.stderr})))
    for path in [*logs, record]:
        text = path.read_text()
        assert secret not in text and "ghp_AAAA" not in text, path
        assert "[REDACTED]" in text, path
    assert redactor.find_in_tree(workspace) == []


def test_secrets_reach_only_the_agent_phase() -> None:
    policy = SandboxPolicy(secrets=["ANTHROPIC_API_KEY"], network="none", setup_network="full")
    assert policy.for_phase("agent").secrets == ["ANTHROPIC_API_KEY"]
    setup = policy.for_phase("setup")
    assert setup.secrets == [] and setup.network == "full"
    assert policy.for_phase("verify").secrets == [] and policy.for_phase("verify").network == "none"


def test_redactor_formats_and_streams() -> None:
    r = Redactor(["correct-horse-battery"])
    samples = {
        "github": "token ghp_" + "a" * 36,
        "github_pat": "github_pat_" + "B" * 40,
        "anthropic": "sk-ant-api03-" + "c" * 40,
        "openai": "sk-proj-" + "d" * 40,
        "aws": "AKIAIOSFODNN7EXAMPLE",
        "slack": "xoxb-123456789012-abcdefghij",
        "known": "pw=correct-horse-battery",
    }
    for name, text in samples.items():
        assert "[REDACTED]" in r.redact(text), name
        assert b"[REDACTED]" in r.redact_bytes(text.encode()), name
    assert r.redact("https://x-access-token:s3cr3t@github.com/o/r.git") == "https://[REDACTED]@github.com/o/r.git"
    assert r.redact("nothing secret here: sk-short") == "nothing secret here: sk-short"
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n"
    assert "AAAA" not in r.redact(key)
    assert "AAAA" not in "".join(r.redact_lines(["before\n", *key.splitlines(keepends=True), "after\n"]))
    # A secret split across chunk borders is still caught.
    stream = r.stream()
    data = b"line one\nthe value correct-horse-battery here\n"
    out = b"".join(stream.feed(data[i : i + 7]) for i in range(0, len(data), 7)) + stream.flush()
    assert out == b"line one\nthe value [REDACTED] here\n"


# ---------------------------------------------------------------------------------------------- providers


async def test_none_provider_runs_plainly_and_says_so(workspace: Path, fake_home: Path) -> None:
    run = await sandboxed(
        NoneProvider(), "print('{\"ok\": true}')", workspace=workspace, env=base_env(fake_home), policy=SandboxPolicy()
    )
    assert run.report() == {"ok": True}
    assert any("NOT enforced" in w for w in run.wrapped.warnings)
    assert "UNSANDBOXED" in run.wrapped.description


def test_container_provider_command_line() -> None:
    policy = SandboxPolicy(
        provider="docker", memory_mb=512, pids=128, cpus=1.5, cpu_seconds=600, disk_mb=100, image="agentgate/agent:1"
    )
    argv = ContainerProvider("docker").build_argv(
        ["claude", "-p", "hi"], workspace="/w/ws", env_names=["ANTHROPIC_API_KEY", "PATH"], policy=policy, name="n1"
    )
    joined = " ".join(argv)
    for flag in (
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--read-only",
        "--network none",
        "--memory 512m",
        "--memory-swap 512m",
        "--pids-limit 128",
        "--cpus 1.5",
        "--ulimit cpu=600:605",
        "-v /w/ws:/w/ws:rw",
        "-w /w/ws",
        "-e ANTHROPIC_API_KEY",
        "--name n1",
    ):
        assert flag in joined, flag
    assert "-e PATH" not in joined
    assert argv[-4:] == ["agentgate/agent:1", "claude", "-p", "hi"]
    podman = ContainerProvider("podman").build_argv(["x"], workspace="/w", env_names=[], policy=policy, name="n")
    assert podman[0] == "podman"


def test_container_engines_report_why_they_are_unavailable() -> None:
    for engine in ("docker", "podman"):
        ok, reason = ContainerProvider(engine).available()
        assert reason
        if not ok:
            assert engine in reason


def test_auto_picks_the_strongest_available_and_records_it(workspace: Path) -> None:
    provider, why = select_provider(SandboxPolicy())
    expected = "bubblewrap" if BWRAP_OK else "none"
    assert provider.name == expected
    assert any(line.startswith(f"{expected}: chosen") for line in why)
    wrapped = wrap_command(["true"], workspace=workspace, env={"PATH": os.defpath}, policy=SandboxPolicy())
    try:
        assert wrapped.provider == expected
        assert "auto:" in wrapped.description and wrapped.record()["provider"] == expected
        assert any(e.startswith("selection: ") for e in wrapped.enforcement)
    finally:
        wrapped.cleanup()
    strict = SandboxPolicy(allow_unsandboxed=False)
    if not BWRAP_OK:
        with pytest.raises(RuntimeError):
            select_provider(strict)
