"""Verification: gate plans, levels L0–L3, gate integrity and feedback (see docs/verify-yaml.md)."""

from agentgate.verification.plan import (
    GatePlan,
    GatePlanError,
    GatePlanSource,
    VerificationOptions,
    VerifyFile,
    VerifyYamlError,
    build_plan,
    parse_verify_yaml,
)
from agentgate.verification.report import CheckResult, IntegrityRule, Level, VerificationReport

__all__ = [
    "CheckResult",
    "GatePlan",
    "GatePlanError",
    "GatePlanSource",
    "IntegrityRule",
    "Level",
    "VerificationOptions",
    "VerificationReport",
    "VerifyFile",
    "VerifyYamlError",
    "build_plan",
    "parse_verify_yaml",
]
