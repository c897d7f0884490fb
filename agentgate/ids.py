"""Work-order ids: `wo_` + a time-sortable random id (Crockford base32, lower case)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_work_order_id() -> str:
    """Millisecond timestamp (10 chars) + 80 random bits (16 chars): sorts by creation time."""
    millis = int(time.time() * 1000)
    return "wo_" + _encode(millis, 10) + _encode(int.from_bytes(os.urandom(10), "big"), 16)
