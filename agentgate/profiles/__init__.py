"""Harness profiles: named, inheritable bundles of work-order settings (docs/profiles.md).

A profile holds how a run is harnessed — limits, gates, convergence, delivery, budgets,
sandbox, agent defaults — so callers name a profile instead of repeating a dozen fields,
and every run records which resolved configuration (`profile_hash`) it ran with.
"""

from __future__ import annotations

from agentgate.profiles.apply import FieldProblem, ProfileApplyError, apply_profile
from agentgate.profiles.errors import ProfileConflict, ProfileError, ProfileNotFound, ProfileProblem
from agentgate.profiles.merge import canonical_json, config_hash, deep_merge
from agentgate.profiles.schema import (
    HARNESS_FIELDS,
    META_KEYS,
    PROFILE_KEYS,
    ProfileDocument,
    ProfileSettings,
    full_settings,
    parse_profile_text,
    profile_from_mapping,
)
from agentgate.profiles.store import BUILTIN_NAMES, MAX_EXTENDS_DEPTH, ProfileStore, ResolvedProfile, check_name

__all__ = [
    "BUILTIN_NAMES",
    "HARNESS_FIELDS",
    "MAX_EXTENDS_DEPTH",
    "META_KEYS",
    "PROFILE_KEYS",
    "FieldProblem",
    "ProfileApplyError",
    "ProfileConflict",
    "ProfileDocument",
    "ProfileError",
    "ProfileNotFound",
    "ProfileProblem",
    "ProfileSettings",
    "ProfileStore",
    "ResolvedProfile",
    "apply_profile",
    "canonical_json",
    "check_name",
    "config_hash",
    "deep_merge",
    "full_settings",
    "parse_profile_text",
    "profile_from_mapping",
]
