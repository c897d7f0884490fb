"""The sandbox an agent gets when neither its work order nor its harness profile names one.

Sandboxed and offline is the default: an agent runs what a model decides, on text that may come from
untrusted issues, so an operator has to *ask* for less isolation, not for more. Offline, however,
means different things per agent:

* `command` (a shell command, no model behind it): network `none`.
* The LLM CLIs (claude-code, codex, opencode) cannot work without their model provider, so they get
  network `allowlist` of exactly that provider's API hosts (`PROVIDER_API_HOSTS`) plus the host of
  every base URL the agent's environment configures (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`, ... —
  a gateway, or a local stub on `127.0.0.1:PORT` in tests; the proxy resolves and connects from
  the worker's side, so a worker-local address is reachable while nothing else is).

`AGENTGATE_SANDBOX_DEFAULT_PROVIDER` picks the provider: `auto` (default; the strongest available),
`bubblewrap` (fail rather than run unconfined), or `none` (trusted local use: a plain subprocess with
the host network and the worker's HOME). Without an isolating provider, `auto` falls back to `none`
and records why; an allowlist cannot be enforced there, so it becomes `full` with a warning.

Everything here is pure apart from `runnable`, which asks the providers whether they can run.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from agentgate.sandbox.policy import _HOST, PROVIDER_API_HOSTS, SandboxPolicy

# Besides every `*_BASE_URL`: the older spellings some SDKs and CLIs still read.
EXTRA_BASE_URL_VARS = ("OPENAI_API_BASE", "OPENAI_BASE", "ANTHROPIC_API_URL")
JSON_CONFIG_VARS = ("OPENCODE_CONFIG_CONTENT",)
DEFAULT_PROVIDERS = ("auto", "bubblewrap", "none")
_BASE_URL_KEY = re.compile(r"base_?url$", re.IGNORECASE)


def _host_entry(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    entry = (f"{shown}:{port}" if port else shown).lower()
    return entry if _HOST.match(entry) else None


def _urls_in(value: Any, key: str = "", depth: int = 0) -> list[str]:
    """String values of `*base_url` / `baseURL` keys anywhere in a (JSON-like) configuration."""
    if depth > 8:
        return []
    if isinstance(value, Mapping):
        return [url for k, v in value.items() for url in _urls_in(v, str(k), depth + 1)]
    if isinstance(value, list):
        return [url for v in value for url in _urls_in(v, key, depth + 1)]
    if isinstance(value, str) and _BASE_URL_KEY.search(key):
        return [value]
    return []


def base_url_hosts(env: Mapping[str, str], options: Mapping[str, Any] | None = None) -> list[str]:
    """`host[:port]` of each configured endpoint: the places the agent was told to send its requests.

    Read from `*_BASE_URL` variables, from OpenCode's `OPENCODE_CONFIG_CONTENT` (JSON) and from the work
    order's agent options (codex `config={"openai_base_url": ...}`).
    """
    urls = [env[name] for name in sorted(env) if name.endswith("_BASE_URL") or name in EXTRA_BASE_URL_VARS]
    for name in JSON_CONFIG_VARS:
        with contextlib.suppress(ValueError, TypeError):
            urls += _urls_in(json.loads(env.get(name) or "null"))
    urls += _urls_in(dict(options or {}))
    hosts: list[str] = []
    for url in urls:
        entry = _host_entry(url)
        if entry and entry not in hosts:
            hosts.append(entry)
    return hosts


def default_policy(
    driver: str, env: Mapping[str, str], provider: str = "auto", options: Mapping[str, Any] | None = None
) -> SandboxPolicy:
    """The agent-phase policy for a work order without one (see the module docstring)."""
    if provider not in DEFAULT_PROVIDERS:
        raise ValueError(f"default sandbox provider {provider!r}: choose one of {', '.join(DEFAULT_PROVIDERS)}")
    if provider == "none":
        return SandboxPolicy(provider="none", network="full")
    provider_hosts = PROVIDER_API_HOSTS.get(driver) or []
    if not provider_hosts:  # no model behind it (`command`): offline
        return SandboxPolicy(provider=provider, network="none")
    hosts = [*provider_hosts, *base_url_hosts(env, options)]
    return SandboxPolicy(provider=provider, network="allowlist", allow_hosts=list(dict.fromkeys(hosts)))


def runnable(
    policy: SandboxPolicy, available: Callable[[], tuple[bool, str]] | None = None
) -> tuple[SandboxPolicy, list[str]]:
    """The default policy as this host can run it, and the warnings that adjustment needs recorded.

    `auto` may fall back to `none` only for a policy `none` can honour; an allowlist it cannot. For the
    *default* policy (not one a work order asked for) an unenforced allowlist beats a run that cannot
    start at all, so it is widened to `full` and the record says so.
    """
    if policy.provider != "auto" or policy.network != "allowlist" or not policy.allow_unsandboxed:
        return policy, []
    if available is None:
        from agentgate.sandbox.providers import BubblewrapProvider

        available = BubblewrapProvider().available
    ok, reason = available()
    if ok:
        return policy, []
    widened = policy.model_copy(update={"network": "full", "allow_hosts": []})
    return widened, [f"network allowlist ({', '.join(policy.allow_hosts)}) NOT enforced: {reason}"]
