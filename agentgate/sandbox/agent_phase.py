"""The agent phase's sandbox, as the build activity sets it up (and tests can, without Temporal).

Which policy: the work order's own (a profile's lands there at submission), else the worker's
default (`defaults.default_policy`: sandboxed and offline; LLM CLIs reach only their provider).
What it adds: the run folder read-only (the prompt and feedback files live there) and, unless the
provider is `none`, a private HOME for the CLI's session state (`session.prepare_session_home`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentgate.sandbox.base import WrappedCommand, resolve_secrets
from agentgate.sandbox.defaults import base_url_hosts, default_policy, runnable
from agentgate.sandbox.policy import PROVIDER_API_HOSTS, SandboxPolicy
from agentgate.sandbox.providers import wrap_command
from agentgate.sandbox.session import prepare_session_home


def named_files(argv: Sequence[str]) -> list[str]:
    """Existing files a `command` agent's shell command names by absolute path (a script, a tool).

    The operator wrote that command, so what it names is meant to run; under the sandbox's private
    /tmp and hidden paths a script kept next to the workspace would otherwise not be found. Files only,
    read-only: a directory could expose far more than the command needs.
    """
    if len(argv) < 3 or argv[1] != "-c":
        return []
    try:
        words = shlex.split(argv[2])
    except ValueError:
        return []
    found: list[str] = []
    for word in words:
        for part in word.split("="):  # also `--config=/path/file`
            real = os.path.realpath(part) if part.startswith("/") else ""
            if real and os.path.isfile(real) and real not in found:  # the target: bwrap cannot bind onto a link
                found.append(real)
    return found


def agent_policy(
    order_policy: SandboxPolicy | None,
    driver: str,
    env: Mapping[str, str],
    default_provider: str = "auto",
    options: Mapping[str, Any] | None = None,
) -> tuple[SandboxPolicy, str, list[str]]:
    """(policy, where it came from, warnings) for one agent run."""
    if order_policy is not None:
        policy = order_policy.for_phase("agent")
        if policy.network == "allowlist" and PROVIDER_API_HOSTS.get(driver):
            # `allowlist` means the model provider's API plus the named hosts: a CLI cut off from its
            # own model could only fail, so an order listing (say) pypi.org keeps its provider too.
            hosts = [*policy.allow_hosts, *PROVIDER_API_HOSTS[driver], *base_url_hosts(env, options)]
            policy = policy.model_copy(update={"allow_hosts": list(dict.fromkeys(hosts))})
        return policy, "work order", []
    policy, warnings = runnable(default_policy(driver, env, default_provider, options))
    return policy, f"default ({default_provider})", warnings


def wrap_agent(
    argv: Sequence[str],
    *,
    driver: str,
    workspace: str | Path,
    env: Mapping[str, str],
    order_policy: SandboxPolicy | None,
    run_dir: str | Path,
    session_home: str | Path,
    default_provider: str = "auto",
    options: Mapping[str, Any] | None = None,
    hide: Sequence[str] = (),
) -> WrappedCommand:
    """The agent command wrapped in its sandbox (`options`: the work order's agent options, where a base
    URL may be configured; `hide`: the service's own state folders, other runs included).
    Raises SandboxUnavailable / SandboxConfigError."""
    policy, source, warnings = agent_policy(order_policy, driver, env, default_provider, options)
    policy = policy.model_copy(update={"hidden_paths": [*policy.hidden_paths, *hide]})
    named = named_files(argv) if driver == "command" else []
    policy = policy.model_copy(update={"read_only_paths": [*policy.read_only_paths, *named, str(run_dir)]})
    env = dict(env)
    credentials: list[str] = []
    if policy.provider != "none":
        session = prepare_session_home(session_home, driver, env.get("HOME"))
        env.update(session.env)
        policy = policy.model_copy(update=session.policy_update(policy))
        credentials = session.credentials
    wrapped = wrap_command(argv, workspace=workspace, env=env, policy=policy, secrets=resolve_secrets(policy))
    wrapped.policy, wrapped.policy_source = policy, source
    wrapped.warnings = warnings + wrapped.warnings
    if policy.provider != "none":
        shown = f"; worker credentials linked read-only: {', '.join(credentials)}" if credentials else ""
        wrapped.enforcement.append(f"home: private {session_home}{shown}")
    return wrapped
