"""Git operations on a run's workspace, via the real `git` binary."""

from __future__ import annotations

import os
import re
from pathlib import Path

from agentgate.process import run_command

AUTHOR_NAME = "AgentGate"
AUTHOR_EMAIL = "agentgate@localhost"
_CRED_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


class GitError(Exception):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        cmd = " ".join(strip_credentials(a) for a in args)
        super().__init__(f"git {cmd} failed with exit code {code}: {strip_credentials(stderr.strip())[-2000:]}")
        self.code = code
        self.stderr = stderr


def strip_credentials(text: str) -> str:
    """Remove `user:token@` from any URL in `text` so credentials never reach a record."""
    return _CRED_IN_URL.sub(r"\g<scheme>", text)


# The worker's own git (clone, snapshot, push; never the agent's) may need the operator's ssh set-up
# for `ssh://` and `git@host:` sources: an agent socket or a custom ssh command.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH")


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASSED_THROUGH}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
    )
    env.setdefault("HOME", str(Path.home()))
    return env


# The agent can write the workspace, including .git/config and hooks: our own git calls
# must never run code it planted there (hooks, fsmonitor) outside its sandbox.
SAFE_GIT = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]


async def git(cwd: str | Path, *args: str, check: bool = True, timeout: float = 300) -> str:
    code, out, err = await run_command(["git", *SAFE_GIT, *args], cwd=cwd, env=git_env(), timeout=timeout)
    if check and code != 0:
        raise GitError(list(args), code, err)
    return out


async def is_repository(path: str | Path) -> bool:
    p = Path(path)
    if not p.is_dir():
        return False
    code, out, _ = await run_command(["git", "rev-parse", "--git-dir"], cwd=p, env=git_env(), timeout=30)
    return code == 0


async def head(cwd: str | Path) -> str:
    return (await git(cwd, "rev-parse", "HEAD")).strip()


async def has_commits(cwd: str | Path) -> bool:
    code, _, _ = await run_command(["git", "rev-parse", "--verify", "HEAD"], cwd=cwd, env=git_env(), timeout=30)
    return code == 0


async def commit_all(cwd: str | Path, message: str) -> str:
    """Stage everything (respecting .gitignore) and commit, even when nothing changed."""
    await git(cwd, "add", "-A")
    await git(cwd, "commit", "--allow-empty", "--no-verify", "-q", "-m", message)
    return await head(cwd)


async def diff(cwd: str | Path, base: str, target: str) -> str:
    return await git(cwd, "diff", "--binary", base, target)


async def numstat(cwd: str | Path, base: str, target: str) -> tuple[int, int, int]:
    """(files changed, insertions, deletions) between two commits."""
    out = await git(cwd, "diff", "--numstat", base, target)
    files = ins = dels = 0
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        files += 1
        ins += int(parts[0]) if parts[0].isdigit() else 0
        dels += int(parts[1]) if parts[1].isdigit() else 0
    return files, ins, dels


async def changed_paths(cwd: str | Path, base: str, target: str) -> list[tuple[str, str]]:
    """(status letter, path) for each path changed between two commits; renames report the old path."""
    out = await git(cwd, "diff", "--name-status", "-M", base, target)
    result = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            result.append((parts[0][0], parts[1]))
    return result
