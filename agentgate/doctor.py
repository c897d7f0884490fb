"""`agentgate doctor`: storage validation plus the orphans between Temporal and the disk.

Temporal holds the runs; the disk holds their artifacts (`AGENTGATE_HOME/runs/<wo>/<run>/`, or
AGENTGATE_ARTIFACT_DIR) and workspaces (`AGENTGATE_HOME/workspaces/<wo>/<run>/`). They drift
apart when an execution is deleted or ages out of the namespace's retention, when someone
removes folders by hand, or when a purge was interrupted. The doctor reports:

- `corrupt_json`      a JSON record that does not parse (fix: quarantine it, as start-up does);
- `corrupt_events`    an events.jsonl with lines its readers cannot decode (fix: copy it to the quarantine
                      and keep only its good lines in place, as start-up does);
- `unreadable`        a file the check could not read (permissions): reported, never touched;
- `orphan_artifacts`  a run folder with no Temporal execution (fix: delete the folder);
- `orphan_workspace`  a workspace with no Temporal execution (fix: delete it);
- `orphan_checkpoint` a checkpoint repository (`_checkpoints/<wo>.git`) of an order Temporal does not
                      know at all (fix: delete it);
- `orphan_execution`  a closed execution whose run folder is gone (fix: delete the execution).

It talks to Temporal directly rather than through the API: it must look at *this host's*
disk (workspaces are per worker host, so an API on another host could not see them), and it
must work when the API is down — it is what an operator runs when something is wrong.

Only this deployment's executions count: workflows of type WorkOrderWorkflow on its task queue
(AGENTGATE_TASK_QUEUE), so another AgentGate sharing the namespace is never taken for a source of
orphans (its disk is not this one).

Never touched: anything of a work order with an open (queued or running) run, re-checked
right before each removal. A run folder whose execution merely is missing from the
visibility listing is confirmed with a direct describe (visibility lags behind) before it
counts as an orphan. Note: a run whose execution was removed by the namespace's retention is
an orphan by this definition, so `--fix` deletes its artifacts; the report shows the retention.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate.artifacts import QUARANTINE_DIR
from agentgate.checkpoints import CHECKPOINTS_DIR
from agentgate.config import Settings
from agentgate.models import WORK_ORDER_ID_PATTERN
from agentgate.purge import delete_execution, remove_tree
from agentgate.sandbox.session import SESSION_HOME_SUFFIX
from agentgate.service import WORKFLOW_TYPE, _visibility_literal
from agentgate.storage_check import StorageReport, check_settings_store
from agentgate.temporal_client import connect

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_UNREACHABLE = 0, 1, 3
_ID = re.compile(WORK_ORDER_ID_PATTERN)
Kind = Literal[
    "corrupt_json",
    "corrupt_events",
    "unreadable",
    "orphan_artifacts",
    "orphan_workspace",
    "orphan_checkpoint",
    "orphan_execution",
]
# Executions that hand over to another run keep their artifacts under that chain: never "orphans".
_NOT_ORPHANABLE = {WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW}


@dataclass
class Finding:
    kind: Kind
    detail: str
    path: str | None = None
    work_order_id: str | None = None
    run_id: str | None = None
    fixed: bool = False
    fix_error: str | None = None


@dataclass
class DoctorReport:
    fix: bool
    storage: StorageReport
    temporal: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]

    @property
    def exit_code(self) -> int:
        if not self.temporal.get("reachable"):
            return EXIT_UNREACHABLE
        return EXIT_PROBLEMS if self.unresolved else EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {
            "fix": self.fix,
            "exit_code": self.exit_code,
            "temporal": self.temporal,
            "storage": self.storage.to_dict(),
            "findings": [asdict(f) for f in self.findings],
            "problems": len(self.unresolved),
        }


def _disk_runs(base: Path) -> dict[str, list[str]]:
    """`{work-order id: [run folder names]}` below `base` (runs or workspaces); other entries are ignored."""
    found: dict[str, list[str]] = {}
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return found
    for wo_dir in entries:
        if wo_dir.name == QUARANTINE_DIR or not _ID.match(wo_dir.name) or not wo_dir.is_dir() or wo_dir.is_symlink():
            continue
        try:
            found[wo_dir.name] = sorted(p.name for p in wo_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
    return found


class _Temporal:
    """The few questions the doctor asks Temporal, with the visibility listing as a first, cheap answer."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self.executions: dict[str, dict[str, WorkflowExecutionStatus | None]] = defaultdict(dict)

    async def load(self) -> None:
        # This deployment's work orders are those on its task queue: another AgentGate sharing the namespace
        # (or a test) keeps its executions next to its own disk, which this doctor cannot see.
        query = f'WorkflowType="{WORKFLOW_TYPE}" AND TaskQueue={_visibility_literal(self.task_queue)}'
        async for wf in self.client.list_workflows(query):
            self.executions[wf.id][wf.run_id] = wf.status

    async def run_exists(self, wo: str, run_id: str) -> bool:
        if run_id in self.executions.get(wo, {}):
            return True
        try:  # visibility may lag behind a run that just started: ask the execution itself
            desc = await self.client.get_workflow_handle(wo, run_id=run_id).describe()
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):  # unknown / not a run id
                return False
            raise
        self.executions[wo][run_id] = desc.status
        return True

    async def order_exists(self, wo: str) -> bool:
        if self.executions.get(wo):
            return True
        try:
            await self.client.get_workflow_handle(wo).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def is_open(self, wo: str) -> bool:
        """True when the order's latest run is still open: then none of its files may be touched."""
        try:
            desc = await self.client.get_workflow_handle(wo).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING

    async def retention_days(self) -> float | None:
        try:
            resp = await self.client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self.client.namespace)
            )
        except RPCError:
            return None
        ttl = resp.config.workflow_execution_retention_ttl
        return round((ttl.seconds + ttl.nanos / 1e9) / 86400, 3)


def _ended_note(run_dir: Path, retention: float | None) -> str:
    """For a finished run, say so: its execution most likely aged out of retention rather than went missing."""
    try:
        data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or data.get("status") not in ("succeeded", "failed", "canceled"):
        return ""
    kept = f" ({retention:g} day(s))" if retention else ""
    return f" (run.json: {data['status']}, ended {data.get('ended_at')}; probably aged out of the retention{kept})"


async def find_orphans(temporal: _Temporal, settings: Settings, retention: float | None = None) -> list[Finding]:
    findings: list[Finding] = []
    disks: tuple[tuple[Kind, Path, dict[str, list[str]]], ...] = (
        ("orphan_artifacts", settings.runs_dir, _disk_runs(settings.runs_dir)),
        ("orphan_workspace", settings.workspaces_dir, _disk_runs(settings.workspaces_dir)),
    )
    open_orders: dict[str, bool] = {}

    async def is_open(wo: str) -> bool:
        if wo not in open_orders:
            listed = temporal.executions.get(wo, {})
            open_orders[wo] = WorkflowExecutionStatus.RUNNING in listed.values() or await temporal.is_open(wo)
        return open_orders[wo]

    for kind, base, on_disk in disks:
        for wo, runs in on_disk.items():
            if await is_open(wo):
                continue
            if not runs and wo not in temporal.executions:
                detail = "an empty folder of a work order Temporal does not know"
                findings.append(Finding(kind, detail, str(base / wo), wo))
            for name in runs:
                # A workspace's neighbour `<run>.home` is that run's private sandbox HOME (agentgate.sandbox.session).
                home = kind == "orphan_workspace" and name.endswith(SESSION_HOME_SUFFIX)
                run_id = name.removesuffix(SESSION_HOME_SUFFIX) if home else name
                if not await temporal.run_exists(wo, run_id):
                    what = "artifact folder" if kind == "orphan_artifacts" else "workspace"
                    what = "private sandbox HOME" if home else what
                    detail = f"{what} of a run with no Temporal execution"
                    if kind == "orphan_artifacts":
                        detail += _ended_note(base / wo / run_id, retention)
                    findings.append(Finding(kind, detail, str(base / wo / name), wo, run_id))
    repos = settings.runs_dir / CHECKPOINTS_DIR
    for repo in sorted(repos.glob("*.git")) if repos.is_dir() else []:
        wo = repo.name.removesuffix(".git")
        if _ID.match(wo) and not repo.is_symlink() and not await temporal.order_exists(wo):
            detail = "checkpoint repository of a work order with no Temporal execution"
            findings.append(Finding("orphan_checkpoint", detail, str(repo), wo))
    for wo, runs in sorted(temporal.executions.items()):
        if not _ID.match(wo) or await is_open(wo):
            continue
        for run_id, status in runs.items():
            if status in _NOT_ORPHANABLE or (settings.runs_dir / wo / run_id).is_dir():
                continue
            state = status.name.lower() if status else "closed"
            detail = f"{state} execution whose artifact folder is gone"
            findings.append(Finding("orphan_execution", detail, str(settings.runs_dir / wo / run_id), wo, run_id))
    return findings


async def _fix(temporal: _Temporal, settings: Settings, finding: Finding) -> None:
    wo = finding.work_order_id
    try:
        if wo is not None and await temporal.is_open(wo):  # a re-run may have started since the scan
            finding.fix_error = "the work order has an open run now; left alone"
            return
        if finding.kind in ("orphan_artifacts", "orphan_workspace", "orphan_checkpoint") and finding.path:
            problem = await asyncio.to_thread(remove_tree, Path(finding.path))
            if problem:
                finding.fix_error = problem
                return
            parent = Path(finding.path).parent
            if finding.run_id is not None and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
            finding.fixed = True
        elif finding.kind == "orphan_execution" and wo and finding.run_id:
            if finding.path and Path(finding.path).is_dir():
                finding.fix_error = "the artifact folder exists again; left alone"
                return
            await delete_execution(temporal.client, wo, finding.run_id)
            finding.fixed = True
    except (RPCError, OSError) as exc:
        finding.fix_error = f"{type(exc).__name__}: {exc}"


def _storage_findings(report: StorageReport) -> list[Finding]:
    out = []
    for item in report.corrupt:
        moved = item.quarantined_to is not None
        detail = item.reason + (f"; moved to {item.quarantined_to}" if moved else "")
        kind: Kind = "corrupt_events" if item.path.endswith(".jsonl") else "corrupt_json"
        detail = detail.replace("moved to", "copied to", 1) if kind == "corrupt_events" else detail
        out.append(Finding(kind, detail, str(Path(report.root) / item.path), fixed=moved))
    for line in report.errors:
        out.append(Finding("unreadable", line))
    return out


async def run_doctor(
    settings: Settings, *, fix: bool = False, client: Client | None = None, connect_timeout: float = 10.0
) -> DoctorReport:
    """Storage validation, then the orphans; with `fix`, quarantine / remove / delete what was found."""
    storage = await asyncio.to_thread(
        check_settings_store, settings, fix=fix, use_cache=False, found_by="agentgate doctor"
    )
    info: dict[str, Any] = {
        "reachable": False,
        "address": settings.temporal_address,
        "namespace": settings.temporal_namespace,
    }
    report = DoctorReport(fix=fix, storage=storage, temporal=info, findings=_storage_findings(storage))
    try:
        if client is None:
            client = await asyncio.wait_for(connect(settings), timeout=connect_timeout)
        temporal = _Temporal(client, settings.task_queue)
        await temporal.load()
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return report
    info["reachable"] = True
    info["retention_days"] = await temporal.retention_days()
    info["executions"] = sum(len(runs) for runs in temporal.executions.values())
    try:
        orphans = await find_orphans(temporal, settings, info["retention_days"])
    except RPCError as exc:
        info["reachable"] = False
        info["error"] = f"RPCError: {exc}"
        return report
    if fix:
        for finding in orphans:
            await _fix(temporal, settings, finding)
    report.findings.extend(orphans)
    return report
