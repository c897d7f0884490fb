"""L0 contracts: what the tree must and must not contain, and no secrets in the agent's diff.

Secret findings are reported masked: the report and the feedback are read by people
and by the agent, and must not spread the credential further. There is deliberately
no inline "allow" comment: the agent is the party being checked, so exceptions live
only in `verify.yaml`, which the agent may not edit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import PurePosixPath

import jsonschema
import yaml

from agentgate.verification.diff import DiffData, glob_match, matches_any
from agentgate.verification.plan import ContractsSection, SecretScan
from agentgate.verification.report import CheckResult, Level

MAX_FINDINGS = 20

SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    (
        "AWS secret access key",
        re.compile(r"(?i)aws_?secret_?(?:access_?)?key\s*[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
    ),
    ("GitHub token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Slack webhook", re.compile(r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+")),
    ("Stripe live key", re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,}\b")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("OpenAI/Anthropic API key", re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}\b")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("URL with a password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]+)@[^\s'\"]+", re.IGNORECASE)),
]
_PLACEHOLDER = re.compile(r"^(?:\$\{?\w+\}?|<[^>]*>|\{\{.*\}\}|\*+|x+|password|pass|secret|changeme|\.\.\.)$", re.I)
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_-]{16,}")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def shannon_entropy(text: str) -> float:
    if not text:
        return 0.0
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def mask(secret: str) -> str:
    return f"{secret[:4]}…({len(secret)} chars)"


def _allowed(cfg: SecretScan, value: str, line: str) -> bool:
    return any(re.search(rx, value) or re.search(rx, line) for rx in cfg.allowlist)


def scan_line(cfg: SecretScan, line: str) -> list[tuple[str, str]]:
    """(kind, matched value) for each secret-looking string in one added line."""
    found: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, rx in SECRET_PATTERNS:
        for m in rx.finditer(line):
            value = m.group(1) if m.groups() and m.group(1) else m.group(0)
            if kind == "URL with a password" and _PLACEHOLDER.match(value):
                continue
            if _allowed(cfg, m.group(0), line):
                continue
            found.append((kind, m.group(0)))
            taken.append(m.span())
    if cfg.entropy:
        for m in _CANDIDATE.finditer(line):
            value = m.group(0).strip("=")
            if len(value) < cfg.min_length or any(a <= m.start() < b for a, b in taken):
                continue
            if _HEX.match(value) or not re.search(r"\d", value) or not re.search(r"[A-Za-z]", value):
                continue  # hashes and plain words are not credentials
            if value.count("/") > 2 or value.count("_") + value.count("-") > len(value) // 6:
                continue  # paths and identifiers
            if shannon_entropy(value) < cfg.entropy_threshold or _allowed(cfg, value, line):
                continue
            found.append(("high-entropy string", value))
    return found


def _result(name: str, kind: str, passed: bool, message: str, **kw) -> CheckResult:
    return CheckResult(name=name, level=Level.L0, kind=kind, passed=passed, message=message, rule=kind, **kw)


def check_secrets(cfg: SecretScan, diff: DiffData) -> list[CheckResult]:
    findings: list[CheckResult] = []
    for path, fd in sorted(diff.files.items()):
        if fd.binary or matches_any(cfg.exclude_files, path):
            continue
        for lineno, text in fd.added:
            for kind, value in scan_line(cfg, text):
                findings.append(
                    _result(
                        f"secret in {path}:{lineno}",
                        "secret",
                        False,
                        f"{kind} added to {path} line {lineno}: {mask(value)}. Remove it and load it from the "
                        "environment instead; if it is a fake test value, the repository owner can allowlist it "
                        "in verify.yaml (contracts.secrets.allowlist).",
                        file=path,
                        line=lineno,
                    )
                )
    if not findings:
        return [_result("secret scan of the diff", "secret", True, "no secrets in the added lines")]
    return findings[:MAX_FINDINGS]


def check_forbidden(cfg: ContractsSection, diff: DiffData) -> list[CheckResult]:
    bad = []
    for path in diff.present_changed():
        pattern = matches_any(cfg.all_forbidden, path)
        if pattern and not matches_any(cfg.allowed_files, path):
            bad.append(
                _result(
                    f"forbidden file {path}",
                    "forbidden_file",
                    False,
                    f"{path} matches the forbidden pattern {pattern!r} (credentials and keys must not be committed); "
                    "delete it and add it to .gitignore",
                    file=path,
                )
            )
    return bad[:MAX_FINDINGS] or [_result("forbidden files", "forbidden_file", True, "no forbidden file added")]


def check_required(cfg: ContractsSection, diff: DiffData) -> list[CheckResult]:
    missing = [g for g in cfg.required_files if not any(glob_match(g, f) for f in diff.head_files)]
    if not missing:
        return [_result("required files", "required_file", True, f"all {len(cfg.required_files)} present")]
    return [
        _result(f"required file {g}", "required_file", False, f"no file matches the required pattern {g!r}", file=g)
        for g in missing
    ]


def _load_data(path: str, text: str) -> object:
    if path.endswith(".json"):
        return json.loads(text)
    return yaml.safe_load(text)


def check_schemas(cfg: ContractsSection, diff: DiffData, read: Callable[[str], str | None]) -> list[CheckResult]:
    problems: list[CheckResult] = []
    for rule in cfg.schemas:
        schema = rule.schema_
        if schema is None:
            raw = read(rule.schema_file or "")
            if raw is None:
                problems.append(
                    _result(f"schema {rule.schema_file}", "schema", False, f"schema file {rule.schema_file} not found")
                )
                continue
            try:
                schema = _load_data(rule.schema_file or "", raw)
            except (ValueError, yaml.YAMLError) as exc:
                problems.append(_result(f"schema {rule.schema_file}", "schema", False, f"unreadable schema: {exc}"))
                continue
        validator_cls = jsonschema.validators.validator_for(schema)
        validator = validator_cls(schema)
        for path in [f for f in diff.head_files if glob_match(rule.files, f)]:
            text = read(path)
            if text is None:
                continue
            try:
                data = _load_data(path, text)
            except (ValueError, yaml.YAMLError) as exc:
                line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
                problems.append(
                    _result(f"schema of {path}", "schema", False, f"{path} does not parse: {exc}", file=path, line=line)
                )
                continue
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if errors:
                detail = "; ".join(
                    f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]
                )
                message = f"{path} violates the schema for {rule.files!r}: {detail}"
                problems.append(_result(f"schema of {path}", "schema", False, message, file=path))
    if problems:
        return problems[:MAX_FINDINGS]
    return [_result("schema rules", "schema", True, f"{len(cfg.schemas)} rule(s) hold")]


def check_naming(cfg: ContractsSection, diff: DiffData) -> list[CheckResult]:
    bad: list[CheckResult] = []
    for change in diff.by_status("A", "R", "C"):
        name = PurePosixPath(change.path).name
        for rule in cfg.naming:
            if glob_match(rule.files, change.path) and not re.fullmatch(rule.pattern, name):
                bad.append(
                    _result(
                        f"naming of {change.path}",
                        "naming",
                        False,
                        rule.message or f"{name} does not match the naming pattern {rule.pattern!r} ({rule.files})",
                        file=change.path,
                    )
                )
    return bad[:MAX_FINDINGS] or [_result("naming conventions", "naming", True, "new files follow the conventions")]


def planned_contract_checks(cfg: ContractsSection) -> int:
    return 1 + bool(cfg.required_files) + bool(cfg.schemas) + bool(cfg.naming) + cfg.secrets.enabled


def check_contracts(cfg: ContractsSection, diff: DiffData, read: Callable[[str], str | None]) -> list[CheckResult]:
    """All L0 checks; `read(path)` returns a file's text in the checked tree (None if absent)."""
    results = check_forbidden(cfg, diff)
    if cfg.required_files:
        results += check_required(cfg, diff)
    if cfg.schemas:
        results += check_schemas(cfg, diff, read)
    if cfg.naming:
        results += check_naming(cfg, diff)
    if cfg.secrets.enabled:
        results += check_secrets(cfg.secrets, diff)
    return results
