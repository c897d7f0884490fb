"""A private, writable HOME for one sandboxed run of an agent CLI.

Under bubblewrap the host file system is read-only, so Claude Code (`~/.claude`, `~/.claude.json`),
Codex (`~/.codex`) and OpenCode (`~/.local/share/opencode`, `~/.config/opencode`,
`~/.cache/opencode`) could not write their session state, and with the worker's real HOME they
would read and rewrite the worker's own. Each run therefore gets a HOME of its own, outside the
workspace (so nothing the CLI writes is committed) and outside the artifact store (so transcripts
the CLI keeps are never published). It lives for the whole run, because iteration 2 resumes the
session iteration 1 left there (`--resume`, `exec resume`, `--session`).

The worker's own CLI state directories are hidden inside the sandbox. Only the credential files
the running CLI needs to log in (a subscription, a ChatGPT login, OpenCode's `auth.json`) are
shown again, read-only, and linked from the private HOME: the CLI can authenticate but cannot
change, copy into the workspace or persist anything else of the worker's.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

# `<workspaces>/<work order>/<run>.home`: next to the run's workspace, so purge and doctor treat it as its part.
SESSION_HOME_SUFFIX = ".home"


def session_home_path(workspaces_dir: Path, work_order_id: str, run_id: str) -> Path:
    return workspaces_dir / work_order_id / f"{run_id}{SESSION_HOME_SUFFIX}"


# Everything any supported CLI keeps under HOME: hidden from every sandboxed agent.
CLI_STATE = (
    ".claude",
    ".claude.json",
    ".claude.json.backup",
    ".codex",
    ".local/share/opencode",
    ".config/opencode",
    ".cache/opencode",
    ".local/state/opencode",
)

# The files a CLI reads to log in, relative to HOME: shown read-only to that CLI only.
CLI_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "claude-code": (".claude/.credentials.json",),
    "codex": (".codex/auth.json", ".codex/config.toml"),
    "opencode": (
        ".local/share/opencode/auth.json",
        ".config/opencode/opencode.json",
        ".config/opencode/opencode.jsonc",
        ".config/opencode/config.json",
    ),
}

# Set to the private HOME's own folders, so a worker-level XDG_* (if a work order passes one) cannot
# send the CLI back to the worker's directories.
_XDG = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}


@dataclass
class SessionHome:
    """The run's private HOME and what the sandbox policy must add for it."""

    path: str
    env: dict[str, str] = field(default_factory=dict)
    writable_paths: list[str] = field(default_factory=list)
    read_only_paths: list[str] = field(default_factory=list)
    hidden_paths: list[str] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)

    def policy_update(self, policy) -> dict:
        """Fields for `policy.model_copy(update=...)`: the HOME writable, the worker's CLI state hidden."""
        return {
            "writable_paths": [*policy.writable_paths, *self.writable_paths],
            "read_only_paths": [*policy.read_only_paths, *self.read_only_paths],
            "hidden_paths": [*policy.hidden_paths, *self.hidden_paths],
        }


def prepare_session_home(path: str | Path, driver: str, worker_home: str | None) -> SessionHome:
    """Create (or reuse, from an earlier iteration of the same run) the private HOME at `path`."""
    home = Path(path)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    for rel in _XDG.values():
        (home / rel).mkdir(parents=True, exist_ok=True)
    session = SessionHome(path=str(home))
    session.env = {"HOME": str(home), **{name: str(home / rel) for name, rel in _XDG.items()}}
    session.writable_paths = [str(home)]
    if not worker_home or not os.path.isabs(worker_home):
        return session
    real_home = os.path.realpath(worker_home)
    if real_home == os.path.realpath(home):
        return session
    for rel in CLI_STATE:
        target = os.path.join(real_home, rel)
        if os.path.lexists(target) and not _contains(target, str(home)):
            session.hidden_paths.append(target)
    for rel in CLI_CREDENTIALS.get(driver, ()):
        source = os.path.join(real_home, rel)
        if not os.path.isfile(source):
            continue
        link = home / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if link.is_symlink() or link.exists():
                link.unlink()
        link.symlink_to(os.path.realpath(source))
        session.read_only_paths.append(os.path.realpath(source))
        session.credentials.append(rel)
    return session


def _contains(directory: str, path: str) -> bool:
    directory = os.path.realpath(directory).rstrip("/")
    path = os.path.realpath(path)
    return path == directory or path.startswith(directory + "/")
