"""Opaque list cursors around Temporal visibility's page tokens.

A cursor is `<token>.<mac>` in base64url: the page token Temporal returned, and an HMAC
over the visibility query it belongs to plus the token. The MAC is an integrity check, not
secrecy: Temporal answers a corrupted token with a retried `Unknown` error (a slow 5xx), and
a token reused with other filters would page through the wrong result set. Both become a
422 here, before Temporal is asked. The key is the API key when one is set, else a value
derived from the deployment (namespace, task queue), so cursors survive API restarts and
work across API replicas.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from agentgate.config import Settings
from api.errors import ApiError, field_error

_MAC_BYTES = 16


def _key(settings: Settings) -> bytes:
    seed = settings.api_key or f"agentgate-cursor:{settings.temporal_namespace}:{settings.task_queue}"
    return hashlib.sha256(seed.encode("utf-8")).digest()


def _mac(settings: Settings, query: str, token: bytes) -> bytes:
    msg = query.encode("utf-8") + b"\0" + token
    return hmac.new(_key(settings), msg, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(settings: Settings, query: str, token: bytes | None) -> str | None:
    if not token:
        return None
    return f"{_b64(token)}.{_b64(_mac(settings, query, token))}"


def invalid_cursor(reason: str) -> ApiError:
    return field_error(
        "query.cursor",
        f"{reason}; pass back the `next_cursor` of the previous page unchanged, with the same filters "
        "(or drop `cursor` to start from the first page)",
    )


def decode_cursor(settings: Settings, query: str, cursor: str) -> bytes:
    """The Temporal page token inside a cursor this API issued for exactly this query; else a 422."""
    token_part, dot, mac_part = cursor.strip().partition(".")
    if not dot or not token_part or not mac_part:
        raise invalid_cursor("not a cursor issued by this API")
    try:
        token, mac = _unb64(token_part), _unb64(mac_part)
    except (binascii.Error, ValueError):
        raise invalid_cursor("not a cursor issued by this API") from None
    if not hmac.compare_digest(mac, _mac(settings, query, token)):
        raise invalid_cursor("the cursor does not belong to this listing (other filters, or altered)")
    return token
