"""The verify phase's sandbox: gates run the code the agent wrote, so they run confined as well.

A gate is `pytest`, `npm test`, a script: code the agent chose (a planted `conftest.py`, a test that
reads `~/.ssh/id_rsa` or writes outside the workspace). Without a sandbox the worker would run it with
its own HOME, credentials and file system. Gates therefore get the same machinery as the agent:

* Policy: the work order's `for_phase("verify")` (no secrets, network `verify_network`), else the
  worker's default (`settings.sandbox_default_provider`, network `none`: gates are hermetic). `auto`
  without an isolating provider falls back to `none` and the record says so, as for the agent.
* Workspace writable, the rest of the host read-only, a private /tmp, credential stores hidden.
* A private HOME: the run's session home (`<run>.home`, `session.py`), so doctor and purge treat it
  like the agent's. The worker's agent-CLI state is hidden and no login file is linked for gates.
* Files a gate names by absolute path (a script in a test's tmp folder) stay visible, read-only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentgate.sandbox.agent_phase import named_files
from agentgate.sandbox.base import WrappedCommand
from agentgate.sandbox.defaults import DEFAULT_PROVIDERS
from agentgate.sandbox.policy import SandboxPolicy
from agentgate.sandbox.providers import wrap_command
from agentgate.sandbox.session import prepare_session_home

# `sh -c` that enters the gate's working directory first: bubblewrap starts in the workspace itself.
_ENTER = 'cd -- "$1" || exit 125; shift; exec /bin/sh -c "$@"'


def verify_policy(order_policy: SandboxPolicy | None, default_provider: str = "auto") -> tuple[SandboxPolicy, str]:
    """(policy, where it came from) for the gates of one verification."""
    if order_policy is not None:
        return order_policy.for_phase("verify"), "work order"
    if default_provider not in DEFAULT_PROVIDERS:
        raise ValueError(f"default sandbox provider {default_provider!r}: choose one of {', '.join(DEFAULT_PROVIDERS)}")
    if default_provider == "none":  # the operator's trusted local use: a plain subprocess, as for the agent
        return SandboxPolicy(provider="none", network="full"), "default (none)"
    return SandboxPolicy(provider=default_provider).for_phase("verify"), f"default ({default_provider})"


class GateSandbox:
    """Wraps each gate command of one verification; `record()` says what they ran under.

    Construction wraps `/bin/true` once (and cleans up): a sandbox that cannot run fails the phase before
    any gate starts (SandboxUnavailable / SandboxConfigError), and the record is the real one.
    """

    def __init__(
        self,
        workspace: str | Path,
        *,
        order_policy: SandboxPolicy | None,
        home: str | Path,
        worker_home: str | None,
        default_provider: str = "auto",
        hide: Sequence[str] = (),
    ) -> None:
        self.workspace = os.path.realpath(workspace)
        policy, self.source = verify_policy(order_policy, default_provider)
        policy = policy.model_copy(update={"hidden_paths": [*policy.hidden_paths, *hide]})
        self.env: dict[str, str] = {}
        if policy.provider != "none":
            session = prepare_session_home(home, "", worker_home)  # no driver: no login file is linked
            self.env = {**session.env, "TMPDIR": "/tmp"}  # the worker's TMPDIR may not exist inside
            policy = policy.model_copy(update=session.policy_update(policy))
            self.home: str | None = session.path
        else:
            self.home = None
        self.policy = policy
        probe = self._wrap(["/bin/true"], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, [])
        try:
            self._record = probe.record()
        finally:
            probe.cleanup()
        if self.home:
            self._record["enforcement"].append(f"home: private {self.home}")

    @property
    def provider(self) -> str:
        return str(self._record["provider"])

    @property
    def network(self) -> str:
        return str(self._record["network"])

    def record(self) -> dict[str, Any]:
        return {**self._record, "enforcement": list(self._record["enforcement"])}

    def wrap(self, run: str, cwd: str | Path, env: Mapping[str, str]) -> WrappedCommand:
        """`/bin/sh -c run` in `cwd` (inside the workspace), confined."""
        argv = ["/bin/sh", "-c", run]
        named = named_files(argv)
        if os.path.realpath(cwd) != self.workspace:
            argv = ["/bin/sh", "-c", _ENTER, "agentgate-gate", str(cwd), run]
        return self._wrap(argv, env, named)

    def _wrap(self, argv: Sequence[str], env: Mapping[str, str], named: list[str]) -> WrappedCommand:
        policy = self.policy
        if named:
            policy = policy.model_copy(update={"read_only_paths": [*policy.read_only_paths, *named]})
        wrapped = wrap_command(argv, workspace=self.workspace, env={**env, **self.env}, policy=policy, secrets={})
        wrapped.policy, wrapped.policy_source = policy, self.source
        return wrapped
