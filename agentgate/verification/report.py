"""The verification report: one record per check, persisted as `verification-<N>.json`.

Every check, whatever its level, produces the same `CheckResult` shape so that the
feedback, the convergence strategies and a human reading the file all see one format.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from agentgate.models import GateOutcome


class Level(StrEnum):
    """Verification levels, in the order they run (integrity first: a cheat makes the rest moot)."""

    INTEGRITY = "integrity"
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


LEVEL_TITLES = {
    Level.INTEGRITY: "gate integrity",
    Level.L0: "contracts",
    Level.L1: "tests",
    Level.L2: "black-box",
    Level.L3: "sanity",
}
SKIPPABLE_LEVELS = (Level.L0, Level.L1, Level.L2, Level.L3)


class IntegrityRule(StrEnum):
    """Typed reasons an iteration fails because the agent weakened the gates."""

    TEST_DELETED = "test_deleted"
    TEST_RENAMED = "test_renamed"
    SKIP_MARKER_ADDED = "skip_marker_added"
    FAILURE_SUPPRESSED = "failure_suppressed"
    THRESHOLD_LOWERED = "threshold_lowered"
    GATE_FILE_EDITED = "gate_file_edited"
    PROTECTED_PATH_EDITED = "protected_path_edited"
    ASSERTIONS_REMOVED = "assertions_removed"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckResult(_Model):
    name: str
    level: Level
    kind: str = Field(description="test, lint, typecheck, setup, blackbox, secret, forbidden_file, integrity rule...")
    passed: bool
    warning: bool = Field(default=False, description="Failed, but configured not to fail the level (L3 default).")
    message: str = ""
    command: str | None = None
    exit_code: int | None = None
    expected_exit_code: int | None = None
    timed_out: bool = False
    output_ref: str | None = None
    output_bytes: int = 0
    excerpt: str = ""
    duration_ms: int = 0
    file: str | None = None
    line: int | None = None
    rule: str | None = Field(default=None, description="Integrity rule or contract rule that produced this result.")
    expected: str | None = None
    actual: str | None = None
    progress: float | None = Field(
        default=None, description="Partial credit when the output says how many tests passed (0..1)."
    )

    @property
    def blocking_failure(self) -> bool:
        return not self.passed and not self.warning


class VerificationReport(_Model):
    iteration: int
    passed: bool
    plan_source: str
    workspace: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    failed_level: Level | None = None
    progress: float = 0.0
    checks: list[CheckResult] = Field(default_factory=list)
    gates: list[dict] = Field(
        default_factory=list, description="Command gates and failed checks as GateOutcome + output_file (compat)."
    )
    skipped_levels: list[Level] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="Names of planned checks that did not run.")
    integrity_violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    duration_ms: int = 0
    sandbox: dict | None = Field(
        default=None, description="What the gate commands ran under: provider, network, warnings (None: unsandboxed)."
    )

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.blocking_failure]


def gate_outcome(check: CheckResult, report_ref: str) -> GateOutcome:
    """The small per-check record that travels through Temporal history."""
    return GateOutcome(
        name=check.name,
        command=check.command or "",
        passed=check.passed or check.warning,
        exit_code=check.exit_code,
        duration_ms=check.duration_ms,
        output_ref=check.output_ref or report_ref,
        output_bytes=check.output_bytes,
        excerpt=check.excerpt or check.message[:3000],
        timed_out=check.timed_out,
        level=check.level.value,
        kind=check.kind,
    )


def progress_of(checks: list[CheckResult], planned: int) -> float:
    """Fraction of the planned checks that pass, with partial credit from test counts.

    The denominator is the whole plan (checks of levels that never ran count as failing),
    so the number only rises when the agent really gets further.
    """
    if planned <= 0:
        return 1.0 if all(c.passed or c.warning for c in checks) else 0.0
    score = 0.0
    for check in checks:
        if check.passed or check.warning:
            score += 1.0
        elif check.progress is not None:
            score += max(0.0, min(1.0, check.progress)) * 0.99
    return round(min(1.0, score / planned), 4)
