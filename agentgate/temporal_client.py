"""Connecting to Temporal the same way from the API, the worker, the CLI and the tests.

The connection options come from settings only, so the embedded dev server, a self-hosted
cluster behind TLS / mTLS and Temporal Cloud (API key) differ by configuration, not code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from agentgate.config import ConfigError, Settings, env_name


def _read_pem(settings: Settings, field: str) -> bytes | None:
    # Read here rather than letting the SDK fail: its errors for a missing or non-PEM file
    # name neither the file nor the setting, which is what an operator needs to fix.
    path: Path | None = getattr(settings, field)
    if path is None:
        return None
    path = path.expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{env_name(field)}={path}: file not found") from None
    except OSError as err:
        raise ConfigError(f"{env_name(field)}={path}: cannot read: {err.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{env_name(field)}={path}: not a PEM file (expected a -----BEGIN ...----- block)")
    return data


def tls_config(settings: Settings) -> TLSConfig | bool | None:
    """The SDK's `tls` argument: a TLSConfig, True (system roots), False, or None (SDK default).

    None lets the SDK turn TLS on by itself when an API key is given (Temporal Cloud).
    """
    cert_field, key_field = "temporal_tls_client_cert", "temporal_tls_client_key"
    if (settings.temporal_tls_client_cert is None) != (settings.temporal_tls_client_key is None):
        raise ConfigError(f"mTLS needs both {env_name(cert_field)} and {env_name(key_field)}; only one is set")
    detailed = any(
        v is not None
        for v in (
            settings.temporal_tls_server_root_ca_cert,
            settings.temporal_tls_client_cert,
            settings.temporal_tls_server_name,
        )
    )
    if settings.temporal_tls is False:
        if detailed:
            raise ConfigError(
                f"{env_name('temporal_tls')}=false contradicts the TLS files / server name that are set; "
                "unset one or the other"
            )
        return False
    if detailed:
        return TLSConfig(
            server_root_ca_cert=_read_pem(settings, "temporal_tls_server_root_ca_cert"),
            client_cert=_read_pem(settings, cert_field),
            client_private_key=_read_pem(settings, key_field),
            domain=settings.temporal_tls_server_name,
        )
    return True if settings.temporal_tls else None


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `Client.connect` besides the address."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return {
        "namespace": settings.temporal_namespace,
        "data_converter": pydantic_data_converter,
        "tls": tls_config(settings),
        "api_key": api_key or None,
    }


async def connect(settings: Settings, **overrides: Any) -> Client:
    """`overrides` adds or replaces `Client.connect` arguments (interceptors, runtime, ...)."""
    return await Client.connect(settings.temporal_address, **(client_options(settings) | overrides))
