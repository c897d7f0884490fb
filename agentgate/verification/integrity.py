"""Gate integrity: an iteration fails when the agent's diff makes the gates easier to pass.

An agent told to "make the tests pass" can also delete the tests, skip them, swallow
their exit code, lower a coverage bar or edit the gate definition. Each of those is a
typed `IntegrityRule`; the checks look only at the diff between the run's base commit
and the snapshot, so they judge what the agent did, not what the repository already had.
Lines that were merely moved (removed and re-added unchanged in the same file) do not count.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from agentgate.verification.diff import DiffData, FileDiff, glob_match, matches_any, read_at
from agentgate.verification.plan import GatePlan, IntegritySection, command_file_references
from agentgate.verification.report import CheckResult, IntegrityRule, Level

DOC_FILES = ["*.md", "*.rst", "*.txt", "*.adoc"]

SKIP_MARKERS = re.compile(
    r"pytest\.mark\.(?:skip|skipif|xfail)\b"
    r"|\bpytest\.(?:skip|xfail|importorskip)\s*\("
    r"|@(?:unittest\.)?(?:skip|skipIf|skipUnless|expectedFailure)\b"
    r"|\bself\.skipTest\s*\("
    r"|\braise\s+(?:unittest\.)?SkipTest\b"
    r"|\b(?:it|test|describe|context|suite)\.(?:skip|todo|only)\s*\("
    r"|\bx(?:it|test|describe|context)\s*\("
    r"|\bf(?:it|describe)\s*\("
    r"|\bt\.Skip(?:f|Now)?\s*\("
    r"|#\[ignore\]"
    r"|--deselect\b"
    r"|(?:^|\s)-k\s+[\"']?not\b"
    r"|\bcollect_ignore(?:_glob)?\b"
)
SUPPRESSION = re.compile(
    r"\|\|\s*(?:true|:|exit\s+0)\b|\|\|\s*:\s*$|\bcontinue-on-error:\s*true\b|\bset\s+\+e\b|--exit-zero\b"
    r"|\bsuccessCodes\b|--passWithNoTests\b"
)
ASSERTION = re.compile(
    r"^\s*(?:assert\b|assert\w*[!(]|self\.assert\w*\s*\(|self\.fail\w*\s*\(|with\s+(?:pytest\.raises|self\.assert\w+)"
    r"|(?:await\s+)?expect\s*\(|(?:assert|require)\.\w+\s*\(|t\.(?:Error|Errorf|Fatal|Fatalf|Fail|FailNow)\b"
    r"|\w+\.should\b|chai\.expect)"
)
CONFIG_FILES = [
    "pyproject.toml",
    "setup.cfg",
    "tox.ini",
    "pytest.ini",
    ".coveragerc",
    "package.json",
    "jest.config.*",
    "vitest.config.*",
    ".nycrc*",
    ".c8rc*",
    "codecov.yml",
    ".codecov.yml",
    "Makefile",
    "noxfile.py",
    ".github/workflows/*",
    "verify.yaml",
    ".agentgate/verify.yaml",
    "*.mk",
    ".eslintrc*",
    "eslint.config.*",
]
# (key pattern, True when a *lower* number is weaker)
THRESHOLDS = re.compile(
    r"(?P<key>--cov-fail-under|cov[-_]fail[-_]under|--fail-under|fail[-_]under|min[-_]?coverage|minimum[-_]coverage"
    r"|coverage[-_]?threshold|branches|functions|lines|statements|threshold|--max-warnings|max[-_]warnings)"
    r"[\"']?\s*[:=]?\s*[\"']?(?P<num>-?\d+(?:\.\d+)?)"
)
HIGHER_IS_WEAKER = ("max-warnings", "max_warnings", "maxwarnings", "--max-warnings")
_NPM_SCRIPT = re.compile(r"^(?:npm|pnpm|yarn)\s+(?:run(?:-script)?\s+)?(?P<name>[\w:.-]+)")


def _moved_out(fd: FileDiff, rx: re.Pattern[str]) -> list[tuple[int, str]]:
    """Added lines matching `rx`, minus as many identical removed lines (code that only moved)."""
    removed = Counter(t.strip() for _, t in fd.removed if rx.search(t))
    out = []
    for lineno, text in fd.added:
        if not rx.search(text):
            continue
        key = text.strip()
        if removed[key] > 0:
            removed[key] -= 1
            continue
        out.append((lineno, text))
    return out


def _violation(rule: IntegrityRule, message: str, file: str | None = None, line: int | None = None) -> CheckResult:
    where = f" ({file}{':' + str(line) if line else ''})" if file else ""
    return CheckResult(
        name=f"integrity: {rule.value}{where}",
        level=Level.INTEGRITY,
        kind=rule.value,
        rule=rule.value,
        passed=False,
        message=message,
        file=file,
        line=line,
    )


def _thresholds(lines: list[tuple[int, str]]) -> dict[str, tuple[float, int]]:
    found: dict[str, tuple[float, int]] = {}
    for lineno, text in lines:
        for m in THRESHOLDS.finditer(text):
            found.setdefault(m.group("key").lower().lstrip("-").replace("_", "-"), (float(m.group("num")), lineno))
    return found


SCRIPT_FILES = ["*.sh", "*.bash", "*.ps1", "Makefile", "*.mk", "scripts/**", "bin/**", "tox.ini", "noxfile.py"]


def gate_files(plan: GatePlan, diff: DiffData) -> set[str]:
    """Files that define or feed the gates: plan files, test modules and scripts the commands name, fixtures, schemas.

    A command's other arguments (`py_compile app.py`, the program a black-box check runs)
    are the code under test, which the agent is supposed to change.
    """
    tracked = set(diff.head_files) | {c.old_path or c.path for c in diff.changes}
    test_patterns = plan.integrity.test_patterns
    files = set(plan.plan_files)
    for cmd in plan.setup + plan.commands:
        refs = command_file_references(cmd.run, tracked)
        if cmd.cwd:
            prefix = cmd.cwd.rstrip("/") + "/"
            inside = {p[len(prefix) :] for p in tracked if p.startswith(prefix)}
            refs |= {prefix + r for r in command_file_references(cmd.run, inside)}
        files |= {r for r in refs if matches_any(test_patterns, r) or matches_any(SCRIPT_FILES, r)}
    for bb in plan.blackbox:
        files |= {p for p in [bb.stdin_file] + [a.equals_file for a in bb.expect] if p}
    files |= {r.schema_file for r in plan.contracts.schemas if r.schema_file}
    return files


def planned_integrity_checks(cfg: IntegritySection) -> int:
    return 0 if not cfg.enabled else len([r for r in IntegrityRule if r not in cfg.allow])


async def check_integrity(plan: GatePlan, diff: DiffData, workspace: str | Path) -> list[CheckResult]:
    cfg = plan.integrity
    if not cfg.enabled:
        return []
    found: dict[IntegrityRule, list[CheckResult]] = {r: [] for r in IntegrityRule if r not in cfg.allow}

    def add(v: CheckResult) -> None:
        rule = IntegrityRule(v.rule)
        if rule in found:
            found[rule].append(v)

    def is_test(path: str) -> bool:
        return bool(matches_any(cfg.test_patterns, path))

    for c in diff.changes:
        if c.status == "D" and is_test(c.path):
            add(_violation(IntegrityRule.TEST_DELETED, f"the test file {c.path} was deleted; restore it", c.path))
        if c.status == "R" and c.old_path and is_test(c.old_path):
            add(
                _violation(
                    IntegrityRule.TEST_RENAMED,
                    f"the test file {c.old_path} was renamed to {c.path}, which can hide it from the test runner; "
                    "keep its name",
                    c.old_path,
                )
            )

    for path, fd in sorted(diff.files.items()):
        if matches_any(DOC_FILES, path):
            continue
        for lineno, text in _moved_out(fd, SKIP_MARKERS):
            add(
                _violation(
                    IntegrityRule.SKIP_MARKER_ADDED,
                    f"a skip/xfail/focus marker was added: `{text.strip()[:160]}`; make the test pass instead",
                    path,
                    lineno,
                )
            )
        for lineno, text in _moved_out(fd, SUPPRESSION):
            add(
                _violation(
                    IntegrityRule.FAILURE_SUPPRESSED,
                    f"a failure is being swallowed: `{text.strip()[:160]}`; let the command fail",
                    path,
                    lineno,
                )
            )
        if matches_any(CONFIG_FILES, path):
            old, new = _thresholds(fd.removed), _thresholds(fd.added)
            for key, (old_v, _) in old.items():
                new_v, new_line = new.get(key, (None, None))
                weaker_up = key in HIGHER_IS_WEAKER
                if new_v is None:
                    msg = f"the threshold `{key}` ({old_v:g}) was removed from {path}; restore it"
                elif (new_v > old_v) if weaker_up else (new_v < old_v):
                    msg = f"the threshold `{key}` was changed from {old_v:g} to {new_v:g} in {path}; restore it"
                else:
                    continue
                add(_violation(IntegrityRule.THRESHOLD_LOWERED, msg, path, new_line))

    protected_gate_files = gate_files(plan, diff)
    for c in diff.changes:
        touched = {c.path} | ({c.old_path} if c.old_path else set())
        hit = sorted(touched & protected_gate_files)
        if hit:
            add(
                _violation(
                    IntegrityRule.GATE_FILE_EDITED,
                    f"{hit[0]} defines or feeds the verification gates and must not be changed by the agent "
                    f"({'deleted' if c.status == 'D' else 'changed'}); revert it",
                    hit[0],
                )
            )
            continue
        pattern = next((p for p in cfg.protected_paths for t in touched if glob_match(p, t)), None)
        if pattern:
            add(
                _violation(
                    IntegrityRule.PROTECTED_PATH_EDITED,
                    f"{c.path} is under the protected path {pattern!r}; revert the change",
                    c.path,
                )
            )

    if any(c.path == "package.json" and c.status == "M" for c in diff.changes):
        scripts = {m.group("name") for cmd in plan.commands + plan.setup if (m := _NPM_SCRIPT.match(cmd.run))}
        scripts = {"test" if s in ("t", "test") else s for s in scripts} - {"install", "ci", "exec"}
        if scripts:
            before, after = (
                await read_at(workspace, diff.base, "package.json"),
                await read_at(workspace, diff.head, "package.json"),
            )
            try:
                old_s = (json.loads(before or "{}").get("scripts") or {}) if before else {}
                new_s = (json.loads(after or "{}").get("scripts") or {}) if after else {}
            except (ValueError, AttributeError):
                old_s, new_s = {}, {"?": "unparseable"}
            for name in sorted(scripts):
                if old_s.get(name) != new_s.get(name):
                    add(
                        _violation(
                            IntegrityRule.GATE_FILE_EDITED,
                            f"the package.json script `{name}` run by a gate changed from {old_s.get(name)!r} to "
                            f"{new_s.get(name)!r}; revert it",
                            "package.json",
                        )
                    )

    removed_total = added_total = 0
    losers: list[tuple[str, int, int]] = []
    for c in diff.changes:
        if c.status == "D" or not is_test(c.path):
            continue
        fd = diff.files.get(c.path)
        if fd is None:
            continue
        minus = sum(1 for _, t in fd.removed if ASSERTION.search(t))
        plus = sum(1 for _, t in fd.added if ASSERTION.search(t))
        removed_total += minus
        added_total += plus
        if minus > plus:
            first = next((ln for ln, t in fd.removed if ASSERTION.search(t)), None)
            losers.append((c.path, minus - plus, first or 0))
    if removed_total > added_total and losers:
        path, _, line = losers[0]
        detail = ", ".join(f"{p} (-{n})" for p, n, _ in losers)
        add(
            _violation(
                IntegrityRule.ASSERTIONS_REMOVED,
                f"the diff removes {removed_total - added_total} assertion(s) from test files: {detail}; restore them",
                path,
                line or None,
            )
        )

    results: list[CheckResult] = []
    for rule, items in found.items():
        if items:
            results.extend(items[:10])
        else:
            results.append(
                CheckResult(
                    name=f"integrity: {rule.value}",
                    level=Level.INTEGRITY,
                    kind=rule.value,
                    rule=rule.value,
                    passed=True,
                    message="no violation",
                )
            )
    return results
