"""Sandboxes for agent processes: isolation, network policy, resource limits, secrets and redaction.

Only the policy model is imported eagerly: `agentgate.models` may embed `SandboxPolicy` in a work
order, and that must stay importable inside Temporal's workflow sandbox (no subprocess, no ctypes,
no threads at import). Everything else loads on first use.
"""

from __future__ import annotations

from typing import Any

from agentgate.sandbox.policy import SandboxConfigError, SandboxPolicy

_LAZY = {
    "WrappedCommand": "agentgate.sandbox.base",
    "SandboxProvider": "agentgate.sandbox.base",
    "SandboxUnavailable": "agentgate.sandbox.base",
    "resolve_secrets": "agentgate.sandbox.base",
    "NoneProvider": "agentgate.sandbox.providers",
    "BubblewrapProvider": "agentgate.sandbox.providers",
    "ContainerProvider": "agentgate.sandbox.providers",
    "get_provider": "agentgate.sandbox.providers",
    "select_provider": "agentgate.sandbox.providers",
    "wrap_command": "agentgate.sandbox.providers",
    "host_report": "agentgate.sandbox.providers",
    "classify_exit": "agentgate.sandbox.limits",
    "RESOURCE_EXCEEDED": "agentgate.sandbox.limits",
    "Redactor": "agentgate.sandbox.redact",
    "REDACTED": "agentgate.sandbox.redact",
}

__all__ = ["SandboxConfigError", "SandboxPolicy", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentgate.sandbox' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
