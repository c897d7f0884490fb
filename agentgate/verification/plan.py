"""The gate plan: which checks run at which level, and where they came from.

A plan is assembled from, in order, the work order's inline gates, a `verify.yaml` in
the workspace, simple GitHub Actions workflows and a detected default. Plan files are
read from the run's *base* commit, never from the agent's latest snapshot, so an agent
cannot relax the gates that judge its own iteration (editing them is an integrity
violation on top of that).

`verify.yaml` is validated strictly: an unknown key, a wrong type or a YAML syntax
error is a `VerifyYamlError` naming the file, the line and the key. Falling back to a
default plan when the owner wrote a broken one would silently verify the wrong thing.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentgate.models import GateSpec
from agentgate.verification.report import SKIPPABLE_LEVELS, IntegrityRule, Level

GatePlanSource = Literal["auto", "profile", "workspace", "ci-workflow", "default"]
VERIFY_FILES = ("verify.yaml", ".agentgate/verify.yaml")
WORKFLOWS_DIR = ".github/workflows/"
CommandKind = Literal["setup", "test", "lint", "typecheck", "build"]

DEFAULT_FORBIDDEN_FILES = [
    ".env*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "credentials.json",
    "service-account*.json",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
    "*.kdbx",
    "*.tfstate",
]
DEFAULT_ALLOWED_FILES = [".env.example", ".env.sample", ".env.template", ".env.dist", "*.pub"]
DEFAULT_SECRET_EXCLUDES = [
    "*.lock",
    "package-lock.json",
    "pnpm-lock.yaml",
    "go.sum",
    "requirements*.txt",
    "*.svg",
    "*.min.js",
]
DEFAULT_TEST_PATTERNS = [
    "test_*.py",
    "*_test.py",
    "conftest.py",
    "tests/**",
    "test/**",
    "**/tests/**",
    "**/test/**",
    "**/__tests__/**",
    "*.test.js",
    "*.test.jsx",
    "*.test.ts",
    "*.test.tsx",
    "*.spec.js",
    "*.spec.jsx",
    "*.spec.ts",
    "*.spec.tsx",
    "*_test.go",
    "*_spec.rb",
]


class GatePlanError(Exception):
    """The plan cannot be built as configured; the message says what to change."""


class VerifyYamlError(GatePlanError):
    def __init__(self, path: str, line: int | None, key: str | None, problem: str) -> None:
        where = f"{path}, line {line}" if line else path
        what = f" at `{key}`" if key else ""
        super().__init__(f"invalid {where}{what}: {problem}")
        self.path, self.line, self.key, self.problem = path, line, key, problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


# ---------------------------------------------------------------------------
# verify.yaml schema (also the plan's building blocks)
# ---------------------------------------------------------------------------


class CommandSpec(_Strict):
    """One shell command; a bare string is shorthand for `{run: <string>}`."""

    name: str | None = None
    run: str = Field(min_length=1)
    timeout: float = Field(default=600, gt=0, le=24 * 3600, description="Seconds before the command is stopped.")
    expected_exit_code: int = 0
    cwd: str | None = Field(default=None, description="Directory relative to the workspace root.")
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, str) else value

    @field_validator("cwd")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("cwd must be a path inside the workspace")
        return value


class TestsSection(_Strict):
    setup: list[CommandSpec] = Field(default_factory=list)
    commands: list[CommandSpec] = Field(default_factory=list, description="Test commands.")
    lint: list[CommandSpec] = Field(default_factory=list)
    typecheck: list[CommandSpec] = Field(default_factory=list)


class Assertion(_Strict):
    """Exactly one of the assertion keys; `stream` picks stdout (default) or stderr."""

    exit_code: int | None = None
    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    equals_file: str | None = None
    json_equals: Any = None
    stream: Literal["stdout", "stderr"] = "stdout"

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _check_regex(value) if value is not None else None

    @model_validator(mode="after")
    def _exactly_one(self) -> Assertion:
        keys = [k for k in ASSERTION_KEYS if k in self.model_fields_set]
        if len(keys) != 1:
            raise ValueError(f"an assertion needs exactly one of {', '.join(ASSERTION_KEYS)} (got {keys or 'none'})")
        return self

    @property
    def key(self) -> str:
        return next(k for k in ASSERTION_KEYS if k in self.model_fields_set)


ASSERTION_KEYS = ("exit_code", "contains", "not_contains", "regex", "json_schema", "equals_file", "json_equals")


class BlackBoxCheck(_Strict):
    name: str | None = None
    run: str = Field(min_length=1)
    stdin: str | None = None
    stdin_file: str | None = Field(default=None, description="Fixture file fed to stdin (path in the workspace).")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=120, gt=0, le=24 * 3600)
    expect: list[Assertion] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_stdin(self) -> BlackBoxCheck:
        if self.stdin is not None and self.stdin_file is not None:
            raise ValueError("use either stdin or stdin_file, not both")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.run


class SchemaRule(_Strict):
    files: str = Field(min_length=1, description="Glob of JSON or YAML files the schema applies to.")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_file: str | None = None

    @model_validator(mode="after")
    def _one_schema(self) -> SchemaRule:
        if (self.schema_ is None) == (self.schema_file is None):
            raise ValueError("give exactly one of schema (inline) or schema_file")
        return self


class NamingRule(_Strict):
    files: str = Field(min_length=1)
    pattern: str = Field(min_length=1, description="Regex the file *name* (not the path) must fully match.")
    message: str | None = None

    _v = field_validator("pattern")(classmethod(lambda cls, v: _check_regex(v)))


class SecretScan(_Strict):
    enabled: bool = True
    allowlist: list[str] = Field(default_factory=list, description="Regexes; a finding matching one is ignored.")
    entropy: bool = True
    entropy_threshold: float = Field(default=4.5, gt=0, le=8)
    min_length: int = Field(default=24, ge=8)
    exclude_files: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_EXCLUDES))

    @field_validator("allowlist")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        return [_check_regex(v) for v in value]


class ContractsSection(_Strict):
    required_files: list[str] = Field(default_factory=list)
    forbidden_files: list[str] = Field(default_factory=list, description="Added to the defaults.")
    default_forbidden: bool = True
    allowed_files: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_FILES))
    schemas: list[SchemaRule] = Field(default_factory=list)
    naming: list[NamingRule] = Field(default_factory=list)
    secrets: SecretScan = Field(default_factory=SecretScan)

    @property
    def all_forbidden(self) -> list[str]:
        return (list(DEFAULT_FORBIDDEN_FILES) if self.default_forbidden else []) + list(self.forbidden_files)


SanityCheckName = Literal["large_files", "debug_leftovers", "temp_files"]


class SanitySection(_Strict):
    max_file_kb: int = Field(default=1024, ge=1)
    large_files: bool = True
    debug_leftovers: bool = True
    temp_files: bool = True
    fail_on: list[SanityCheckName] = Field(default_factory=list, description="Sanity checks that fail instead of warn.")


class IntegritySection(_Strict):
    enabled: bool = True
    protected_paths: list[str] = Field(default_factory=list, description="Globs the agent must not touch.")
    test_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_TEST_PATTERNS))
    allow: list[IntegrityRule] = Field(default_factory=list, description="Rules turned off for this repository.")


LevelName = Literal["L0", "L1", "L2", "L3"]


class VerifyFile(_Strict):
    """The documented schema of `verify.yaml` (see docs/verify-yaml.md)."""

    version: Literal[1] = 1
    skip_levels: list[LevelName] = Field(default_factory=list)
    contracts: ContractsSection = Field(default_factory=ContractsSection)
    tests: TestsSection = Field(default_factory=TestsSection)
    blackbox: list[BlackBoxCheck] = Field(default_factory=list)
    sanity: SanitySection = Field(default_factory=SanitySection)
    integrity: IntegritySection = Field(default_factory=IntegritySection)


# ---------------------------------------------------------------------------
# The resolved plan
# ---------------------------------------------------------------------------


class PlannedCommand(_Strict):
    name: str
    run: str
    kind: CommandKind
    timeout: float = 600
    expected_exit_code: int = 0
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    origin: str = Field(description="Where this command came from: work_order, verify.yaml, a CI workflow, default.")


class GatePlan(_Strict):
    source: GatePlanSource
    sources_used: list[str] = Field(default_factory=list)
    contracts: ContractsSection = Field(default_factory=ContractsSection)
    setup: list[PlannedCommand] = Field(default_factory=list)
    commands: list[PlannedCommand] = Field(default_factory=list)
    blackbox: list[BlackBoxCheck] = Field(default_factory=list)
    sanity: SanitySection = Field(default_factory=SanitySection)
    integrity: IntegritySection = Field(default_factory=IntegritySection)
    skip_levels: list[Level] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    plan_files: list[str] = Field(
        default_factory=list, description="Files that define the gates; editing them is an integrity violation."
    )

    def runs(self, level: Level) -> bool:
        return level not in self.skip_levels


class VerificationOptions(_Strict):
    """Per-work-order settings; proposed as fields of WorkOrderRequest."""

    gate_plan_source: GatePlanSource = "auto"
    skip_levels: list[LevelName] = Field(default_factory=list)
    protected_paths: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# verify.yaml parsing with line numbers
# ---------------------------------------------------------------------------


def _loc_text(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _node_for(root: yaml.Node, loc: Sequence[Any]) -> tuple[yaml.Node, yaml.Node | None]:
    """(deepest value node, its key node) along a pydantic error location."""
    node: yaml.Node = root
    key_node: yaml.Node | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                return node, key_node
            key_node, node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node, key_node = node.value[part], None
        else:
            break
    return node, key_node


def _duplicate_keys(node: yaml.Node, path: str = "") -> tuple[yaml.Node, str] | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(getattr(key, "value", ""))
            if name in seen:
                return key, f"{path}.{name}" if path else name
            seen.add(name)
            found = _duplicate_keys(value, f"{path}.{name}" if path else name)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_keys(item, f"{path}[{i}]")
            if found:
                return found
    return None


def parse_verify_yaml(text: str, path: str = "verify.yaml") -> VerifyFile:
    """Parse and validate a verify.yaml, raising `VerifyYamlError` with line and key on any problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise VerifyYamlError(path, mark.line + 1 if mark else None, None, f"YAML syntax error: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise VerifyYamlError(path, None, None, f"YAML error: {exc}") from exc
    if root is None:
        raise VerifyYamlError(path, 1, None, "the file is empty; write at least `version: 1`")
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise VerifyYamlError(path, root.start_mark.line + 1, None, "the top level must be a mapping of keys")
    dup = _duplicate_keys(root)
    if dup:
        raise VerifyYamlError(path, dup[0].start_mark.line + 1, dup[1], "duplicate key")
    try:
        return VerifyFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("function-after",)))]
        node, key_node = _node_for(root, loc)
        if err["type"] == "extra_forbidden" and key_node is not None:
            node = key_node
        key = _loc_text(loc) or None
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key `{loc[-1]}`"
        elif err["type"] == "missing":
            msg = f"missing required key `{loc[-1]}`"
        extra = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise VerifyYamlError(path, node.start_mark.line + 1, key, msg + extra) from exc


# ---------------------------------------------------------------------------
# GitHub Actions ingestion
# ---------------------------------------------------------------------------

_PREFIX = r"(?:(?:uv run|poetry run|pdm run|pipenv run|hatch run|npx|pnpm exec|yarn)\s+)?"
_CI_TOOLS: list[tuple[re.Pattern[str], CommandKind]] = [
    (re.compile(p), kind)
    for p, kind in [
        (rf"^{_PREFIX}(?:python3?\s+-m\s+)?pytest\b", "test"),
        (rf"^{_PREFIX}python3?\s+-m\s+unittest\b", "test"),
        (r"^(?:npm|pnpm|yarn)\s+(?:run\s+)?test\b", "test"),
        (r"^npm\s+t\b", "test"),
        (r"^cargo\s+test\b", "test"),
        (r"^go\s+test\b", "test"),
        (rf"^{_PREFIX}(?:jest|vitest|mocha)\b", "test"),
        (r"^make\s+(?:test|check)\b", "test"),
        (rf"^{_PREFIX}ruff(?:\s+check\b|\s+format\s+--check\b|\s+\.)", "lint"),
        (rf"^{_PREFIX}(?:flake8|pylint|eslint|golangci-lint|prettier\s+--check)\b", "lint"),
        (rf"^{_PREFIX}black\s+--check\b", "lint"),
        (r"^(?:npm|pnpm|yarn)\s+(?:run\s+)?lint\b", "lint"),
        (r"^cargo\s+(?:clippy|fmt\s+(?:--\s+)?--check)\b", "lint"),
        (r"^go\s+vet\b", "lint"),
        (rf"^{_PREFIX}(?:mypy|pyright|tsc)\b", "typecheck"),
        (r"^(?:npm|pnpm|yarn)\s+(?:run\s+)?(?:typecheck|type-check|tsc)\b", "typecheck"),
    ]
]
_CD_PREFIX = re.compile(r"^cd\s+(\S+)\s*&&\s*")


def classify_ci_line(line: str) -> tuple[CommandKind, str | None, str] | None:
    """(kind, cwd, command) when a CI `run:` line is a test/lint/typecheck command we can run."""
    cwd = None
    m = _CD_PREFIX.match(line)
    if m:
        cwd, line = m.group(1), line[m.end() :]
    for pattern, kind in _CI_TOOLS:
        if pattern.search(line):
            return kind, cwd, line
    return None


def _run_lines(script: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in script.splitlines():
        stripped = raw.strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full and not full.startswith("#"):
            lines.append(full)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def ingest_workflows(files: Mapping[str, str]) -> tuple[list[PlannedCommand], list[str], list[str]]:
    """Test/lint steps of simple GitHub Actions workflows: (commands, notes, files used).

    Workflows that need services, secrets or conditionals cannot be reproduced faithfully
    in a workspace, so they are skipped with a note rather than half-run.
    """
    commands: list[PlannedCommand] = []
    notes: list[str] = []
    used: list[str] = []
    for path in sorted(files):
        text = files[path]
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            notes.append(f"{path}: skipped, not valid YAML ({str(exc).splitlines()[0]})")
            continue
        jobs = doc.get("jobs") if isinstance(doc, dict) else None
        if not isinstance(jobs, dict):
            notes.append(f"{path}: skipped, no jobs")
            continue
        reason = None
        if "secrets." in text:
            reason = "uses secrets"
        for job_name, job in jobs.items():
            if not isinstance(job, dict):
                continue
            if reason:
                break
            if "services" in job:
                reason = f"job {job_name} needs services"
            elif "container" in job:
                reason = f"job {job_name} runs in a container"
            elif "if" in job or any(isinstance(s, dict) and "if" in s for s in job.get("steps") or []):
                reason = f"job {job_name} has `if:` conditionals"
        if reason:
            notes.append(f"{path}: skipped, {reason}")
            continue
        found = 0
        top_wd = ((doc.get("defaults") or {}).get("run") or {}).get("working-directory")
        for job_name, job in jobs.items():
            if not isinstance(job, dict):
                continue
            job_wd = ((job.get("defaults") or {}).get("run") or {}).get("working-directory") or top_wd
            for step in job.get("steps") or []:
                if not isinstance(step, dict) or not isinstance(step.get("run"), str):
                    continue
                step_wd = step.get("working-directory") or job_wd
                for line in _run_lines(step["run"]):
                    hit = classify_ci_line(line)
                    if hit is None:
                        continue
                    kind, cd, command = hit
                    if "${{" in command:
                        notes.append(f"{path}: job {job_name}: skipped `{command}` (uses a workflow expression)")
                        continue
                    cwd = "/".join(p for p in (step_wd, cd) if p) or None
                    if cwd and (cwd.startswith("/") or "${{" in cwd or ".." in cwd.split("/")):
                        notes.append(f"{path}: job {job_name}: skipped `{command}` (working directory {cwd})")
                        continue
                    commands.append(
                        PlannedCommand(
                            name=f"{job_name}: {command}",
                            run=command,
                            kind=kind,
                            cwd=cwd,
                            origin=f"{path} (job {job_name})",
                        )
                    )
                    found += 1
        if found:
            used.append(path)
        else:
            notes.append(f"{path}: no test, lint or typecheck steps recognised")
    # the same command in several jobs (a matrix, push + PR workflows) runs once
    unique: dict[tuple[str, str | None], PlannedCommand] = {}
    for c in commands:
        unique.setdefault((c.run, c.cwd), c)
    return list(unique.values()), notes, used


# ---------------------------------------------------------------------------
# Default plan
# ---------------------------------------------------------------------------


def default_commands(
    head_files: Iterable[str], head_texts: Mapping[str, str]
) -> tuple[list[PlannedCommand], list[str]]:
    """Commands a project of a recognised kind is conventionally checked with."""
    files = set(head_files)
    cmds: list[PlannedCommand] = []
    notes: list[str] = []

    def add(name: str, run: str, kind: CommandKind) -> None:
        cmds.append(PlannedCommand(name=name, run=run, kind=kind, origin="default"))

    pyproject = head_texts.get("pyproject.toml", "")
    has_py_tests = any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", f) for f in files)
    if "pyproject.toml" in files or "setup.py" in files or "setup.cfg" in files or has_py_tests:
        add("pytest", "python3 -m pytest -q", "test")
        if "[tool.ruff" in pyproject:
            add("ruff", "ruff check .", "lint")
        if "[tool.mypy" in pyproject:
            add("mypy", "mypy .", "typecheck")
        notes.append("default plan: Python project detected")
    if "package.json" in files:
        try:
            scripts = json.loads(head_texts.get("package.json", "{}")).get("scripts") or {}
        except (ValueError, AttributeError):
            scripts = {}
            notes.append("package.json is not valid JSON; its scripts were not read")
        test = scripts.get("test", "")
        if test and "no test specified" not in test:
            add("npm test", "npm test", "test")
        if "lint" in scripts:
            add("npm run lint", "npm run lint", "lint")
        for name in ("typecheck", "type-check"):
            if name in scripts:
                add(f"npm run {name}", f"npm run {name}", "typecheck")
                break
        notes.append("default plan: Node project detected")
    if "Cargo.toml" in files:
        add("cargo test", "cargo test", "test")
        notes.append("default plan: Rust project detected")
    if "go.mod" in files:
        add("go test", "go test ./...", "test")
        add("go vet", "go vet ./...", "lint")
        notes.append("default plan: Go project detected")
    if not cmds:
        notes.append("default plan: no project type recognised, so no test commands (L1 has nothing to run)")
    return cmds, notes


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def _from_spec(spec: CommandSpec, kind: CommandKind, origin: str) -> PlannedCommand:
    return PlannedCommand(
        name=spec.name or spec.run,
        run=spec.run,
        kind=kind,
        timeout=spec.timeout,
        expected_exit_code=spec.expected_exit_code,
        cwd=spec.cwd,
        env=spec.env,
        origin=origin,
    )


def inline_commands(gates: Iterable[GateSpec]) -> list[PlannedCommand]:
    return [
        PlannedCommand(
            name=g.display_name,
            run=g.command,
            kind="test",
            timeout=g.timeout_seconds,
            expected_exit_code=g.expected_exit_code,
            origin="work_order",
        )
        for g in gates
    ]


def workflow_files(paths: Iterable[str]) -> list[str]:
    return sorted(
        p for p in paths if p.startswith(WORKFLOWS_DIR) and p.endswith((".yml", ".yaml")) and p.count("/") == 2
    )


def build_plan(
    *,
    source: GatePlanSource = "auto",
    inline_gates: Sequence[GateSpec] = (),
    base_texts: Mapping[str, str] | None = None,
    head_files: Iterable[str] = (),
    head_texts: Mapping[str, str] | None = None,
    skip_levels: Iterable[str] = (),
    protected_paths: Iterable[str] = (),
) -> GatePlan:
    """Resolve the plan.

    `base_texts` holds plan files (verify.yaml, workflows) as of the run's base commit;
    `head_files`/`head_texts` describe the current tree for default detection only.
    """
    base_texts = dict(base_texts or {})
    head_texts = dict(head_texts or {})
    notes: list[str] = []
    used: list[str] = []
    plan_files: list[str] = list(VERIFY_FILES)

    present = [p for p in VERIFY_FILES if p in base_texts]
    if len(present) > 1:
        raise GatePlanError(f"both {present[0]} and {present[1]} exist; keep one so there is a single plan")
    vfile: VerifyFile | None = None
    if present and source in ("auto", "workspace"):
        vfile = parse_verify_yaml(base_texts[present[0]], present[0])
        used.append(present[0])
    elif present:
        notes.append(f"{present[0]} ignored: gate_plan_source is {source!r}")

    inline = inline_commands(inline_gates)
    setup: list[PlannedCommand] = []
    commands: list[PlannedCommand] = []
    if vfile is not None:
        origin = present[0]
        setup = [_from_spec(s, "setup", origin) for s in vfile.tests.setup]
        commands = (
            [_from_spec(s, "test", origin) for s in vfile.tests.commands]
            + [_from_spec(s, "lint", origin) for s in vfile.tests.lint]
            + [_from_spec(s, "typecheck", origin) for s in vfile.tests.typecheck]
        )

    def from_ci(required: bool) -> list[PlannedCommand]:
        wf = {p: base_texts[p] for p in workflow_files(base_texts)}
        if not wf:
            if required:
                raise GatePlanError("gate_plan_source is 'ci-workflow' but there is no .github/workflows/*.yml")
            return []
        cmds, ci_notes, ci_used = ingest_workflows(wf)
        notes.extend(ci_notes)
        if not cmds and required:
            raise GatePlanError(
                "gate_plan_source is 'ci-workflow' but no runnable test/lint step was found: " + "; ".join(ci_notes)
            )
        used.extend(ci_used)
        plan_files.extend(ci_used)
        return cmds

    def from_default() -> list[PlannedCommand]:
        cmds, d_notes = default_commands(head_files, head_texts)
        notes.extend(d_notes)
        used.append("default")
        return cmds

    if source == "profile":
        if not inline:
            # The order's gates are its profile's gates (docs/profiles.md) unless the caller overrode them.
            raise GatePlanError("gate_plan_source is 'profile' but neither the work order nor its profile has gates")
        commands, used = inline, ["work_order"]
    elif source == "workspace":
        if vfile is None:
            raise GatePlanError(f"gate_plan_source is 'workspace' but neither {' nor '.join(VERIFY_FILES)} exists")
    elif source == "ci-workflow":
        commands = from_ci(required=True)
    elif source == "default":
        commands = from_default()
    else:  # auto
        if inline:
            commands = inline + commands
            used.insert(0, "work_order")
        if not commands:
            commands = from_ci(required=False)
            if not commands:
                commands = from_default()

    skips = {Level(s) for s in skip_levels}
    if vfile is not None:
        skips |= {Level(s) for s in vfile.skip_levels}
    integrity = vfile.integrity if vfile else IntegritySection()
    extra_protected = [p for p in protected_paths if p not in integrity.protected_paths]
    if extra_protected:
        integrity = integrity.model_copy(update={"protected_paths": integrity.protected_paths + extra_protected})
    return GatePlan(
        source=source,
        sources_used=used,
        contracts=vfile.contracts if vfile else ContractsSection(),
        setup=setup,
        commands=commands,
        blackbox=vfile.blackbox if vfile else [],
        sanity=vfile.sanity if vfile else SanitySection(),
        integrity=integrity,
        skip_levels=[lv for lv in SKIPPABLE_LEVELS if lv in skips],
        notes=notes,
        plan_files=plan_files,
    )


def command_file_references(command: str, files: Iterable[str]) -> set[str]:
    """Repository files a gate command names (scripts, test modules), which the agent must leave alone."""
    tracked = set(files)
    refs: set[str] = set()
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    for tok in tokens:
        tok = tok.split("::")[0].rstrip(";")
        if tok.startswith("-") and "=" in tok:
            tok = tok.split("=", 1)[1]
        cand = tok[2:] if tok.startswith("./") else tok
        if not cand or cand.startswith("-"):
            continue
        for c in (cand, cand.replace(".", "/") + ".py", cand + ".py"):
            if c in tracked:
                refs.add(c)
        if tokens and tokens[0] == "make" and "Makefile" in tracked:
            refs.add("Makefile")
    return refs
