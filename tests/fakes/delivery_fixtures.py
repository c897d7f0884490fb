"""Fixtures for the delivery tests: a fake GitHub with a real bare remote, a real workspace, activity deps.

Import the fixtures into a test module by name (`from tests.fakes.delivery_fixtures import ...`).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.deps import ActivityDeps
from agentgate.config import Settings
from agentgate.models import RunContext, WorkspaceInfo
from tests.fakes.github_server import FakeGitHub

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(cwd: Path, *args: str) -> str:
    import os

    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def commit_file(repo: Path, name: str, text: str, message: str) -> str:
    (repo / name).write_text(text)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", message)
    return sh(repo, "rev-parse", "HEAD")


@pytest.fixture
def gh_token() -> str:
    # Shaped like a real fine-grained token so any leak is unmistakable in a scan.
    return "github_pat_" + secrets.token_hex(20)


@pytest.fixture
def bare_remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote" / "demo.git"
    bare.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "trunk", str(bare)], check=True)
    return bare


@pytest.fixture
def fake_github(gh_token: str, bare_remote: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(gh_token, owner="octo", repo="demo", default_branch="trunk", bare_repo=bare_remote).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def github_env(monkeypatch: pytest.MonkeyPatch, fake_github: FakeGitHub, gh_token: str) -> FakeGitHub:
    monkeypatch.setenv("AGENTGATE_GITHUB_TOKEN", gh_token)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("AGENTGATE_GITHUB_API_URL", fake_github.base_url)
    return fake_github


@pytest.fixture
def workspace(tmp_path: Path, bare_remote: Path) -> WorkspaceInfo:
    """A run's workspace: base commit on `trunk` (also in the remote), one agent commit on the run branch."""
    ws = tmp_path / "ws"
    ws.mkdir()
    sh(ws, "init", "-q", "-b", "trunk")
    base = commit_file(ws, "README.md", "demo\n", "initial")
    sh(ws, "push", "-q", str(bare_remote), "trunk")
    branch = "agentgate/wo_0123456789abcdef"
    sh(ws, "checkout", "-q", "-b", branch)
    commit_file(ws, "mathlib.py", "def add(a, b):\n    return a - b\n", "agentgate: iteration 1")
    return WorkspaceInfo(path=str(ws), base_commit=base, branch=branch, task_queue="unused")


@pytest.fixture
def deps(settings: Settings) -> ActivityDeps:
    return ActivityDeps.from_settings(settings)


@pytest.fixture
def run_ctx() -> RunContext:
    return RunContext(work_order_id="wo_0123456789abcdef", run_id=f"run-{datetime.now(UTC):%H%M%S%f}")


def scan_for_secret(root: Path, secret: str) -> list[str]:
    """Every file under `root` whose bytes contain the secret (raw or base64 inside a header)."""
    import base64

    needles = [secret.encode(), base64.b64encode(f"x-access-token:{secret}".encode())]
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(path))
    return hits
