"""Runs a gate plan against a workspace: integrity → L0 → L1 → L2 → L3, stopping at the first failing level.

Commands run through `agentgate.process.run_streaming` (own session, whole-tree stop on
timeout or cancel), inside the verify phase's sandbox when one is given (`GateSandbox`: they run
code the agent wrote), with their full output in the artifact store; the report carries
bounded excerpts and the references. Within a level every check runs, so the agent
sees all lint and test failures at once; a failing level stops the later ones because
their results would be noise on top of a known failure.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema

from agentgate.artifacts import ArtifactStore, tail_text
from agentgate.models import RunContext
from agentgate.process import run_streaming
from agentgate.verification.contracts import check_contracts, planned_contract_checks
from agentgate.verification.diff import DiffData, collect_diff, matches_any
from agentgate.verification.integrity import DOC_FILES, check_integrity, planned_integrity_checks
from agentgate.verification.plan import Assertion, BlackBoxCheck, GatePlan, PlannedCommand, SanitySection
from agentgate.verification.report import CheckResult, Level, VerificationReport, gate_outcome, progress_of

if TYPE_CHECKING:
    from agentgate.sandbox.verify_phase import GateSandbox

EXCERPT_CHARS = 3000
MAX_READ_BYTES = 5_000_000
TEMP_FILES = ["*.orig", "*.rej", "*.bak", "*.swp", "*.swo", "*~", "*.tmp", ".DS_Store", "Thumbs.db", "*.pyc"]
DEBUG_PATTERNS: list[tuple[list[str], re.Pattern[str], bool]] = [
    # (file globs, pattern, applies to test files too)
    (["*.py"], re.compile(r"^\s*(?:breakpoint\(\)|import\s+i?pdb\b|from\s+i?pdb\s+import|i?pdb\.set_trace\()"), True),
    (["*.py"], re.compile(r"^\s*print\("), False),
    (
        ["*.js", "*.jsx", "*.ts", "*.tsx", "*.mjs", "*.cjs"],
        re.compile(r"\bconsole\.(?:log|debug)\(|^\s*debugger;?"),
        False,
    ),
    (["*.rs"], re.compile(r"\bdbg!\("), True),
    (["*.rb"], re.compile(r"\bbinding\.pry\b|^\s*byebug\b"), True),
]

CheckCallback = Callable[[CheckResult], None]


def gate_environment(workspace: str, iteration: int, work_order_id: str) -> dict[str, str]:
    """A small, predictable environment: gates must not see the worker's credentials."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        AGENTGATE_WORKSPACE=workspace,
        AGENTGATE_ITERATION=str(iteration),
        AGENTGATE_WORK_ORDER_ID=work_order_id,
        CI="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# ---------------------------------------------------------------------------
# Test counts, for partial progress
# ---------------------------------------------------------------------------


def count_tests(output: str) -> tuple[int, int] | None:
    """(passed, total) when the output is from a runner whose summary we can read."""
    tail = output[-20000:]
    m = re.search(r"^Ran (\d+) tests? in", tail, re.M)  # unittest
    if m:
        total = int(m.group(1))
        bad = sum(int(x) for x in re.findall(r"(?:failures|errors)=(\d+)", tail[m.end() :]))
        return max(0, total - bad), total
    m = re.search(r"^Tests:\s+(.*\d+ total)", tail, re.M)  # jest
    if m:
        nums = dict((k, int(v)) for v, k in re.findall(r"(\d+) (\w+)", m.group(1)))
        return nums.get("passed", 0), nums.get("total", 0)
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed", tail)  # cargo
    if m:
        return int(m.group(1)), int(m.group(1)) + int(m.group(2))
    lines = [ln for ln in tail.splitlines() if re.search(r"\d+ (?:passed|failed)\b.* in [\d.]+s", ln)]  # pytest
    if lines:
        nums: dict[str, int] = {}
        for v, k in re.findall(r"(\d+) (passed|failed|errors?)\b", lines[-1]):
            nums[k.rstrip("s")] = nums.get(k.rstrip("s"), 0) + int(v)
        total = nums.get("passed", 0) + nums.get("failed", 0) + nums.get("error", 0)
        return nums.get("passed", 0), total
    passes, fails = len(re.findall(r"^--- PASS", tail, re.M)), len(re.findall(r"^--- FAIL", tail, re.M))  # go
    if passes + fails:
        return passes, passes + fails
    return None


# ---------------------------------------------------------------------------
# L1
# ---------------------------------------------------------------------------


def _cwd(workspace: str, rel: str | None) -> Path | None:
    path = Path(workspace) / rel if rel else Path(workspace)
    return path if path.is_dir() else None


async def _run_gate(run: str, cwd: Path, env: dict[str, str], sandbox: GateSandbox | None, **kw):
    """`/bin/sh -c run` in `cwd`, confined by `sandbox` (None: a plain subprocess).

    Sets `outcome.limit` to the resource limit the gate hit ("memory limit 256 MB"), None otherwise:
    a gate killed by its sandbox must say so, not read as an ordinary test failure."""
    if sandbox is None:
        return await run_streaming(["/bin/sh", "-c", run], cwd=cwd, env=env, grace_seconds=5, **kw)
    from agentgate.sandbox.limits import classify_exit

    wrapped = sandbox.wrap(run, cwd, env)
    try:
        proc = await run_streaming(wrapped.argv, cwd=cwd, env=wrapped.env, grace_seconds=5, **kw)
        evidence = wrapped.evidence()  # read before cleanup removes the cgroup
    finally:
        wrapped.cleanup()
    tail = tail_text(Path(kw["stderr_path"]).read_bytes(), 4000) if kw.get("stderr_path") else ""
    proc.limit = classify_exit(proc.exit_code, None, tail, sandbox.policy, evidence)
    return proc


async def run_command_check(
    cmd: PlannedCommand,
    *,
    workspace: str,
    env: dict[str, str],
    log_path: Path,
    log_ref: str,
    sandbox: GateSandbox | None = None,
) -> CheckResult:
    log_path.unlink(missing_ok=True)
    cwd = _cwd(workspace, cmd.cwd)
    if cwd is None:
        return CheckResult(
            name=cmd.name,
            level=Level.L1,
            kind=cmd.kind,
            passed=False,
            command=cmd.run,
            message=f"working directory {cmd.cwd!r} does not exist in the workspace",
        )
    proc = await _run_gate(
        cmd.run,
        cwd,
        {**env, **cmd.env},
        sandbox,
        stdout_path=log_path,
        stderr_path=log_path,
        timeout_seconds=cmd.timeout,
    )
    output = log_path.read_bytes()
    passed = not proc.timed_out and proc.exit_code == cmd.expected_exit_code
    text = output.decode("utf-8", "replace")
    counts = count_tests(text) if cmd.kind == "test" else None
    if proc.timed_out:
        message = f"timed out after {cmd.timeout:g} s"
    elif proc.limit and not passed:
        message = f"resource_exceeded: {proc.limit} (the sandbox stopped it; exit code {proc.exit_code})"
    elif passed:
        message = f"exit code {proc.exit_code}"
    else:
        message = f"exit code {proc.exit_code}, expected {cmd.expected_exit_code}"
    if counts:
        message += f"; {counts[0]}/{counts[1]} tests passed"
    return CheckResult(
        name=cmd.name,
        level=Level.L1,
        kind=cmd.kind,
        passed=passed,
        message=message,
        command=cmd.run,
        exit_code=proc.exit_code,
        expected_exit_code=cmd.expected_exit_code,
        timed_out=proc.timed_out,
        output_ref=log_ref,
        output_bytes=len(output),
        excerpt=tail_text(output, EXCERPT_CHARS),
        duration_ms=proc.duration_ms,
        progress=(counts[0] / counts[1]) if counts and counts[1] else None,
    )


# ---------------------------------------------------------------------------
# L2
# ---------------------------------------------------------------------------


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def evaluate_assertion(a: Assertion, exit_code: int | None, stdout: str, stderr: str, workspace: str) -> str | None:
    """None when the assertion holds, else what went wrong (expected vs actual)."""
    text = stderr if a.stream == "stderr" else stdout
    key = a.key
    if key == "exit_code":
        return None if exit_code == a.exit_code else f"exit code: expected {a.exit_code}, got {exit_code}"
    if key == "contains":
        return None if a.contains in text else f"{a.stream} should contain {_short(a.contains)!r}"
    if key == "not_contains":
        return None if a.not_contains not in text else f"{a.stream} should not contain {_short(a.not_contains)!r}"
    if key == "regex":
        return None if re.search(a.regex or "", text, re.M) else f"{a.stream} should match /{a.regex}/"
    if key == "equals_file":
        path = Path(workspace) / (a.equals_file or "")
        if not path.is_file():
            return f"expected-output file {a.equals_file} does not exist"
        want = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").rstrip("\n")
        got = text.replace("\r\n", "\n").rstrip("\n")
        return None if want == got else f"{a.stream} should equal the content of {a.equals_file}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"{a.stream} is not JSON ({exc})"
    if key == "json_schema":
        errors = list(jsonschema.validators.validator_for(a.json_schema)(a.json_schema).iter_errors(data))
        if not errors:
            return None
        e = errors[0]
        return f"JSON output violates the schema at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
    return None if data == a.json_equals else f"JSON output should equal {_short(a.json_equals)}"


async def run_blackbox_check(
    check: BlackBoxCheck,
    *,
    workspace: str,
    env: dict[str, str],
    out_path: Path,
    err_path: Path,
    out_ref: str,
    sandbox: GateSandbox | None = None,
) -> CheckResult:
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    base = dict(name=check.display_name, level=Level.L2, kind="blackbox", command=check.run)
    cwd = _cwd(workspace, check.cwd)
    if cwd is None:
        return CheckResult(**base, passed=False, message=f"working directory {check.cwd!r} does not exist")
    stdin: bytes | None = check.stdin.encode() if check.stdin is not None else None
    if check.stdin_file:
        fixture = Path(workspace) / check.stdin_file
        if not fixture.is_file():
            return CheckResult(**base, passed=False, message=f"fixture {check.stdin_file} does not exist")
        stdin = fixture.read_bytes()
    proc = await _run_gate(
        check.run,
        cwd,
        {**env, **check.env},
        sandbox,
        stdout_path=out_path,
        stderr_path=err_path,
        timeout_seconds=check.timeout,
        stdin_data=stdin,
    )
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    failures = [f"resource_exceeded: {proc.limit} (the sandbox stopped it)"] if proc.limit else []
    if proc.timed_out:
        failures.append(f"timed out after {check.timeout:g} s")
    else:
        for a in check.expect:
            problem = evaluate_assertion(a, proc.exit_code, stdout, stderr, workspace)
            if problem:
                failures.append(problem)
    held = len(check.expect) - len(failures)
    return CheckResult(
        **base,
        passed=not failures,
        message="; ".join(failures) if failures else f"{len(check.expect)} assertion(s) hold",
        exit_code=proc.exit_code,
        timed_out=proc.timed_out,
        output_ref=out_ref,
        output_bytes=len(stdout) + len(stderr),
        excerpt=tail_text(stdout + ("\n[stderr]\n" + stderr if stderr else ""), EXCERPT_CHARS),
        duration_ms=proc.duration_ms,
        expected=failures[0] if failures else None,
        actual=_short(stdout, 1000) if failures else None,
        progress=max(0, held) / len(check.expect),
    )


# ---------------------------------------------------------------------------
# L3
# ---------------------------------------------------------------------------


def _sanity_result(name: str, kind: str, findings: list[tuple[str, int | None, str]], fail: bool) -> CheckResult:
    if not findings:
        return CheckResult(name=name, level=Level.L3, kind=kind, passed=True, message="nothing found")
    listing = "; ".join(f"{f}{':' + str(ln) if ln else ''} {what}" for f, ln, what in findings[:10])
    more = f" (+{len(findings) - 10} more)" if len(findings) > 10 else ""
    return CheckResult(
        name=name,
        level=Level.L3,
        kind=kind,
        passed=False,
        warning=not fail,
        message=listing + more,
        file=findings[0][0],
        line=findings[0][1],
    )


def check_sanity(cfg: SanitySection, diff: DiffData, workspace: str, test_patterns: list[str]) -> list[CheckResult]:
    results = []
    present = diff.present_changed()
    if cfg.large_files:
        limit = cfg.max_file_kb * 1024
        big = []
        for path in present:
            p = Path(workspace) / path
            if p.is_file() and (size := p.stat().st_size) > limit:
                big.append((path, None, f"is {size // 1024} KiB (limit {cfg.max_file_kb} KiB)"))
        results.append(_sanity_result("large files", "large_files", big, "large_files" in cfg.fail_on))
    if cfg.debug_leftovers:
        found = []
        for path, fd in sorted(diff.files.items()):
            if matches_any(DOC_FILES, path):
                continue
            is_test = bool(matches_any(test_patterns, path))
            for globs, rx, in_tests in DEBUG_PATTERNS:
                if not matches_any(globs, path) or (is_test and not in_tests):
                    continue
                found += [(path, ln, f"`{t.strip()[:80]}`") for ln, t in fd.added if rx.search(t)]
        results.append(_sanity_result("debug leftovers", "debug_leftovers", found, "debug_leftovers" in cfg.fail_on))
    if cfg.temp_files:
        temp = [(p, None, "is a temporary/backup file") for p in present if matches_any(TEMP_FILES, p)]
        results.append(_sanity_result("temp/backup files", "temp_files", temp, "temp_files" in cfg.fail_on))
    return results


def planned_sanity_checks(cfg: SanitySection) -> int:
    return int(cfg.large_files) + int(cfg.debug_leftovers) + int(cfg.temp_files)


# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------


def _reader(workspace: str) -> Callable[[str], str | None]:
    root = Path(workspace).resolve()

    def read(rel: str) -> str | None:
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_READ_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")

    return read


async def run_plan(
    plan: GatePlan,
    *,
    workspace: str,
    base: str,
    head: str,
    iteration: int,
    store: ArtifactStore,
    ctx: RunContext,
    env: dict[str, str] | None = None,
    on_check: CheckCallback | None = None,
    sandbox: GateSandbox | None = None,
) -> VerificationReport:
    """Run the plan; gate commands inside `sandbox` when given (its record goes into the report)."""
    started = time.monotonic()
    env = env if env is not None else gate_environment(workspace, iteration, ctx.work_order_id)
    diff = await collect_diff(workspace, base, head)
    checks: list[CheckResult] = []
    skipped: list[str] = []
    failed_level: Level | None = None
    planned = {
        Level.INTEGRITY: planned_integrity_checks(plan.integrity),
        Level.L0: planned_contract_checks(plan.contracts),
        Level.L1: len(plan.setup) + len(plan.commands),
        Level.L2: len(plan.blackbox),
        Level.L3: planned_sanity_checks(plan.sanity),
    }

    def record(results: list[CheckResult]) -> None:
        for r in results:
            checks.append(r)
            if on_check:
                on_check(r)

    def planned_names(level: Level) -> list[str]:
        if level == Level.L1:
            return [c.name for c in plan.setup + plan.commands]
        if level == Level.L2:
            return [b.display_name for b in plan.blackbox]
        return [f"{level.value} checks"] if planned[level] else []

    k = 0
    for level in (Level.INTEGRITY, Level.L0, Level.L1, Level.L2, Level.L3):
        if level != Level.INTEGRITY and not plan.runs(level):
            continue
        if failed_level is not None:
            skipped += planned_names(level)
            continue
        if level == Level.INTEGRITY:
            record(await check_integrity(plan, diff, workspace))
        elif level == Level.L0:
            record(check_contracts(plan.contracts, diff, _reader(workspace)))
        elif level == Level.L1:
            for i, cmd in enumerate(plan.setup + plan.commands):
                k += 1
                ref = f"gate-{iteration}-{k}.log"
                result = await run_command_check(
                    cmd, workspace=workspace, env=env, log_path=store.path(ctx, ref), log_ref=ref, sandbox=sandbox
                )
                record([result])
                if cmd.kind == "setup" and not result.passed:
                    skipped += [c.name for c in (plan.setup + plan.commands)[i + 1 :]]
                    break
        elif level == Level.L2:
            for j, bb in enumerate(plan.blackbox, start=1):
                out_ref, err_ref = f"blackbox-{iteration}-{j}.stdout.log", f"blackbox-{iteration}-{j}.stderr.log"
                record(
                    [
                        await run_blackbox_check(
                            bb,
                            workspace=workspace,
                            env=env,
                            out_path=store.path(ctx, out_ref),
                            err_path=store.path(ctx, err_ref),
                            out_ref=out_ref,
                            sandbox=sandbox,
                        )
                    ]
                )
        else:
            record(check_sanity(plan.sanity, diff, workspace, plan.integrity.test_patterns))
        if any(c.level == level and c.blocking_failure for c in checks):
            failed_level = level

    total = sum(n for lv, n in planned.items() if lv == Level.INTEGRITY or plan.runs(lv))
    report_ref = f"verification-{iteration}.json"
    gate_checks = [c for c in checks if c.level in (Level.L1, Level.L2) or c.blocking_failure]
    return VerificationReport(
        iteration=iteration,
        passed=failed_level is None,
        plan_source=plan.source,
        workspace=workspace,
        base_commit=base,
        head_commit=head,
        failed_level=failed_level,
        progress=progress_of(checks, total),
        checks=checks,
        gates=[
            gate_outcome(c, report_ref).model_dump() | {"output_file": c.output_ref or report_ref} for c in gate_checks
        ],
        skipped_levels=list(plan.skip_levels),
        skipped=skipped,
        integrity_violations=sorted({c.rule for c in checks if c.level == Level.INTEGRITY and not c.passed and c.rule}),
        warnings=[f"{c.name}: {c.message}" for c in checks if c.warning],
        notes=list(plan.notes) + [f"plan sources: {', '.join(plan.sources_used) or 'none'}"],
        duration_ms=int((time.monotonic() - started) * 1000),
        sandbox=sandbox.record() if sandbox is not None else None,
    )
