"""`agentgate doctor` and `agentgate purge`: the operator's cleanup tools (docs/operations.md).

`doctor` runs on the host whose disk it checks and talks to Temporal directly (the API may be
down, and workspaces live on worker hosts the API cannot see). `purge` goes through the API like
every other work-order command. Exit codes: 0 clean / done, 1 problems found and not fixed (doctor)
or orders not purged (purge), 2 bad input, 3 Temporal / the API unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer

from agentgate.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    _api_failure,
    _client,
    _fail,
    _settings,
    out,
)
from agentgate.client import ApiRequestError
from agentgate.config import ConfigError

KNOWN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")


def register(app: typer.Typer) -> None:
    """Add `doctor` and `purge` to the root app."""
    app.command()(doctor)
    app.command()(purge)


def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Quarantine corrupt files, remove orphans.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Check the artifact store and the orphans between Temporal and this host's disk (0 clean, 1 problems, 3 down)."""
    from agentgate.doctor import run_doctor
    from agentgate.embedded import resolve_endpoints

    settings = resolve_endpoints(_settings())  # AGENTGATE_TEMPORAL_PORT alone points at the embedded server
    try:
        report = asyncio.run(run_doctor(settings, fix=fix))
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
        return
    time.sleep(0.2)  # let the SDK's runtime threads wind down before the interpreter exits
    data = report.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(_doctor_text(data), highlight=False, soft_wrap=True)
    raise typer.Exit(report.exit_code)


def _doctor_text(data: dict[str, Any]) -> str:
    storage, temporal = data["storage"], data["temporal"]
    lines = [f"artifact store {storage['root']}: {storage['scanned']} files checked in {storage['seconds']:.2f} s"]
    if storage.get("skipped"):
        lines.append(f"  storage check skipped: {storage['skipped']}")
    if storage["too_large"]:
        lines.append(f"  {len(storage['too_large'])} file(s) too large to check: {', '.join(storage['too_large'][:5])}")
    if storage["in_quarantine"]:
        lines.append(f"  {storage['in_quarantine']} file(s) in quarantine ({storage['root']}/_quarantine)")
    if temporal["reachable"]:
        retention = temporal.get("retention_days")
        kept = f", retention {retention:g} days" if retention else ""
        lines.append(
            f"Temporal {temporal['address']} ({temporal['namespace']}{kept}): {temporal['executions']} executions"
        )
    else:
        lines.append(f"Temporal {temporal['address']} unreachable: {temporal.get('error')}")
    for f in data["findings"]:
        state = "fixed" if f["fixed"] else (f"NOT fixed: {f['fix_error']}" if f["fix_error"] else "found")
        where = f["path"] or ""
        lines.append(f"  [{f['kind']}] {where}: {f['detail']} ({state})")
    if not data["findings"] and temporal["reachable"]:
        lines.append("no problems found")
    elif data["problems"] and not data["fix"]:
        lines.append(f"{data['problems']} problem(s); `agentgate doctor --fix` repairs them")
    return "\n".join(lines)


def purge(
    ids: Annotated[list[str] | None, typer.Option("--id", help="A work-order id; repeatable.")] = None,
    statuses: Annotated[
        list[str] | None, typer.Option("--status", help=f"Latest run's status, repeatable: {', '.join(KNOWN_STATUSES)}")
    ] = None,
    older_than_days: Annotated[
        float | None, typer.Option("--older-than-days", help="Latest run started more than N days ago.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run/--yes", help="Default --dry-run: only list; --yes deletes for good.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Also purge queued/running orders (terminated).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Delete work orders: Temporal executions (with history), artifact folders, workspaces. Dry run by default."""
    if not ids and not statuses and older_than_days is None:
        _fail(EXIT_BAD_INPUT, "give at least one selector: --id, --status or --older-than-days")
    for status in statuses or []:
        if status not in KNOWN_STATUSES:
            _fail(EXIT_BAD_INPUT, f"--status {status!r}: choose one of {', '.join(KNOWN_STATUSES)}")
    if older_than_days is not None and older_than_days < 0:
        _fail(EXIT_BAD_INPUT, "--older-than-days must not be negative")
    with _client(_settings()) as client:
        try:
            selected = {"ids": ids or None, "statuses": statuses or None, "older_than_days": older_than_days}
            report = client.purge(**selected, dry_run=dry_run, force=force)
        except ApiRequestError as exc:
            _api_failure(exc)
            return
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        out.print(_purge_text(report), highlight=False, soft_wrap=True)
    not_done = report["errors"] or (not report["dry_run"] and any(i["action"] == "skipped" for i in report["items"]))
    raise typer.Exit(EXIT_FAILED if not_done else EXIT_OK)


def _purge_text(report: dict[str, Any]) -> str:
    lines = []
    for item in report["items"]:
        what = [f"{len(item['runs'])} run(s)"] if item["runs"] else []
        what += [p for p in (item["artifacts"], item["workspaces"]) if p]
        detail = f" — {item['reason']}" if item.get("reason") else ""
        errors = f" [errors: {'; '.join(item['errors'])}]" if item["errors"] else ""
        lines.append(f"{item['action']:<12} {item['id']} ({item['status'] or '?'}) {', '.join(what)}{detail}{errors}")
    verb = "would purge" if report["dry_run"] else "purged"
    lines.append(
        f"{verb} {report['purged']} of {report['matched']} matched; {report['skipped']} skipped, "
        f"{report['errors']} error(s)" + ("; more matched than the limit, run again" if report["truncated"] else "")
    )
    if report["dry_run"] and report["purged"]:
        lines.append("dry run: nothing was deleted; add --yes to purge")
    return "\n".join(lines)
