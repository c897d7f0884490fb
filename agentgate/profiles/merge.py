"""Deep merge and the config hash: the two pure rules every profile resolution follows.

Kept apart from file handling so the API, the CLI and the tests share one definition of
"what wins" and of "the same configuration".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, everything else (lists too) is replaced.

    Lists are replaced rather than concatenated because a profile that lists gates or protected
    paths means exactly that list; concatenation could never remove an inherited entry. An
    explicit `null` in `override` replaces too (that is how a child clears an inherited budget).
    Neither input is modified.
    """
    result: dict[str, Any] = {k: _copy(v) for k, v in (base or {}).items()}
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = _copy(value)
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def canonical_json(data: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(settings: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of resolved settings: equal configurations, equal hashes."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()
