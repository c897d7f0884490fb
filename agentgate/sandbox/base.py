"""What every sandbox provider returns, and the pieces the providers share.

A provider does not run anything: it rewrites a command line (and its environment) so that
`agentgate.process.run_streaming` — the one place processes are started, streamed and stopped —
runs it isolated. That keeps process-tree control in one place for every provider.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agentgate.sandbox.policy import SandboxConfigError, SandboxPolicy

__all__ = [
    "Mount",
    "SandboxConfigError",
    "SandboxProvider",
    "SandboxUnavailable",
    "WrappedCommand",
    "mount_plan",
    "resolve_secrets",
    "sensitive_paths",
]

# Files and directories of a worker host that an agent never needs and an attacker always wants.
HOME_SECRETS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".vault-token",
    ".terraform.d",
)
HOST_SECRETS = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/run/podman",
    "/var/lib/docker",
    "/run/secrets",
)


class SandboxUnavailable(RuntimeError):
    """The requested provider cannot run on this host; the message says why."""


@dataclass
class WrappedCommand:
    """A command rewritten to run isolated. Pass `argv`/`env` to run_streaming, then call `cleanup()`.

    `description` is the one line a run record shows ("bubblewrap: network none, pids 64 (cgroup v1) ...");
    `record()` is the structured form for agent-N.json. `evidence()` must be read *before* `cleanup()`.
    """

    argv: list[str]
    env: dict[str, str]
    cleanup: Callable[[], None]
    description: str
    provider: str = "none"
    network: str = "full"
    warnings: list[str] = field(default_factory=list)
    enforcement: list[str] = field(default_factory=list)
    probe: Callable[[], dict[str, Any]] | None = None
    secret_names: list[str] = field(default_factory=list)
    policy: SandboxPolicy | None = None
    policy_source: str = "work order"

    def evidence(self) -> dict[str, Any]:
        """Counters proving which limit a finished run hit (see `limits.classify_exit`)."""
        if self.probe is None:
            return {}
        try:
            return self.probe()
        except OSError as exc:
            return {"probe_error": str(exc)}

    def record(self) -> dict[str, Any]:
        """JSON-ready facts for the run record; names only, never secret values."""
        return {
            "provider": self.provider,
            "description": self.description,
            "network": self.network,
            "policy_source": self.policy_source,
            "enforcement": list(self.enforcement),
            "warnings": list(self.warnings),
            "secrets": list(self.secret_names),
        }

    def __enter__(self) -> WrappedCommand:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class SandboxProvider(Protocol):
    name: str

    def available(self) -> tuple[bool, str]: ...

    def wrap(
        self,
        argv: Sequence[str],
        *,
        workspace: str | Path,
        env: Mapping[str, str],
        policy: SandboxPolicy,
        secrets: Mapping[str, str] | None = None,
    ) -> WrappedCommand: ...


def resolve_secrets(policy: SandboxPolicy, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values of the secrets the policy names, from the worker's environment (missing ones are absent)."""
    source = os.environ if source is None else source
    return {name: source[name] for name in policy.secrets if name in source}


def sensitive_paths(env: Mapping[str, str], policy: SandboxPolicy) -> list[str]:
    """Existing host paths to make empty inside: credentials under both HOMEs, host secrets, policy extras."""
    # Not all of /root: on many hosts the interpreter and the agent CLIs live there (pyenv, nvm).
    homes = {os.path.expanduser("~"), "/root"}
    if env.get("HOME"):
        homes.add(env["HOME"])
    found: list[str] = []
    for home in sorted(homes):
        found.extend(os.path.join(home, rel) for rel in HOME_SECRETS)
    found.extend(HOST_SECRETS)
    found.extend(policy.hidden_paths)
    out: list[str] = []
    for path in found:
        with contextlib.suppress(OSError):
            if os.path.lexists(path):
                out.append(os.path.realpath(path))
    # A path inside another hidden directory is hidden already (and would not exist to mount over).
    dirs = [p for p in out if os.path.isdir(p)]
    return sorted({p for p in out if not any(p != d and p.startswith(d.rstrip("/") + "/") for d in dirs)})


@dataclass(frozen=True)
class Mount:
    """One entry of a sandbox's file-system plan. Every provider renders the same plan its own way.

    `ro` / `rw`: a host path visible at the same path, read-only / writable; `hide`: made empty
    (a directory becomes an empty read-only tmpfs, a file /dev/null). `optional`: skipped when
    the path does not exist, instead of failing the start.
    """

    kind: Literal["ro", "rw", "hide"]
    path: str
    optional: bool = False


def mount_plan(workspace: str, env: Mapping[str, str], policy: SandboxPolicy, *, host_view: bool) -> list[Mount]:
    """What the sandbox sees, in the order the mounts must be made (later ones sit on top).

    `host_view`: the provider shows the host's own file system read-only (bubblewrap), so credential
    stores must be hidden and our interpreter must survive the private /tmp. A container has a root
    file system of its own; for it only the binds matter.
    """
    plan: list[Mount] = []
    if host_view:
        for path in sensitive_paths(env, policy):
            if os.path.realpath(path) != workspace:
                plan.append(Mount("hide", os.path.realpath(path)))
        plan += [Mount("ro", p, optional=True) for p in runtime_paths_under_tmp()]
    # Resolved: a bind onto a symbolic link fails (bwrap cannot create the mount point through it).
    plan += [Mount("ro", os.path.realpath(p), optional=True) for p in policy.read_only_paths]
    plan.append(Mount("rw", workspace))
    plan += [Mount("ro", p) for p in git_guard_paths(workspace, policy)]
    plan += [Mount("rw", os.path.realpath(p), optional=True) for p in policy.writable_paths]
    return plan


def git_guard_paths(workspace: str, policy: SandboxPolicy) -> list[str]:
    """.git/config and .git/hooks, kept read-only: both make the *worker's* later git commands run code of
    the agent's choosing (core.fsmonitor, core.hooksPath, post-commit hooks), outside any sandbox."""
    if not policy.protect_git:
        return []
    out: list[str] = []
    for rel in (".git/config", ".git/hooks"):
        path = os.path.join(workspace, rel)
        if os.path.lexists(path) and not os.path.islink(path):
            out.append(path)
    return out


def runtime_paths_under_tmp() -> list[str]:
    """Our interpreter, its environment and this project, when they live under /tmp (a fresh
    clone in a temporary folder): the sandbox's private /tmp would otherwise hide them."""
    import sys

    project = Path(__file__).resolve().parents[2]
    found = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), str(project)}
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(p for p in found if p == "/tmp" or p.startswith("/tmp/"))


def child_env(env: Mapping[str, str], secrets: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict:
    merged = dict(env)
    merged.update(secrets)
    if extra:
        merged.update(extra)
    return merged


def noop() -> None:
    return None
