"""`git push` with a token that exists only in the git process's environment.

The token is handed to git as an `http.<origin>.extraHeader` through `GIT_CONFIG_COUNT`
environment variables (git >= 2.31): it is not on the command line (visible in `ps`),
not in `.git/config`, not in a credential store, and scoped to the remote's origin so
a redirect elsewhere never receives it. Remote URLs are stripped of any `user:pass@`.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

from agentgate.delivery.github import redact
from agentgate.git import git_env, strip_credentials
from agentgate.process import run_command


class PushError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


# git's stderr for failures that a retry cannot fix
_PERMANENT = (
    "authentication failed",
    "could not read username",
    "permission to",
    "403",
    "401",
    "repository not found",
    "does not appear to be a git repository",
    "protected branch",
    "pre-receive hook declined",
    "not found",
)


def token_env(remote_url: str, token: str | None) -> dict[str, str]:
    env = git_env()
    # Never consult or update a credential helper: nothing may persist the token.
    config = [("credential.helper", "")]
    parts = urlsplit(remote_url)
    if token and parts.scheme in ("http", "https") and parts.hostname:
        origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/"
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config.append((f"http.{origin}.extraHeader", f"Authorization: Basic {basic}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


async def push_head(
    workspace: str | Path, remote_url: str, branch: str, token: str | None, *, timeout: float = 600
) -> str:
    """Force-push HEAD to `refs/heads/<branch>` on `remote_url`; returns the clean remote URL.

    Force, because the branch belongs to the run: a re-run of the same work order
    rewrites it from the same base, which is not a fast-forward.
    """
    clean = strip_credentials(remote_url)
    env = token_env(clean, token)
    argv = ["git", "push", "--force", "--porcelain", clean, f"HEAD:refs/heads/{branch}"]
    code, out, err = await run_command(argv, cwd=workspace, env=env, timeout=timeout)
    if code != 0:
        detail = redact((err or out).strip(), token)[-1500:]
        lowered = detail.lower()
        retryable = not any(p in lowered for p in _PERMANENT)
        raise PushError(f"git push of {branch} to {clean} failed (exit {code}): {detail}", retryable=retryable)
    return clean
