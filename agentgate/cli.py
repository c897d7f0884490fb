"""`agentgate` command line: the embedded stack, a worker, the API, and work orders via the API.

Exit codes scripts can rely on: 0 success (a waited-for run passed), 1 the run did not
pass, 2 bad input, 3 the service is unreachable or failed, 4 the run was canceled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agentgate.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    _api_failure,
    _client,
    _emit,
    _fail,
    _result_code,
    _settings,
    app,
    err,
    out,
)
from agentgate.client import AgentGateClient, ApiRequestError
from agentgate.commands import register_commands
from agentgate.config import ConfigError, Settings

# -- stack ------------------------------------------------------------------------------


@app.command()
def up() -> None:
    """Run the embedded stack in the foreground: Temporal dev server + Web UI, a worker, the API."""
    from agentgate.embedded import StackError, run_stack
    from agentgate.logs import configure_basic_logging

    configure_basic_logging()
    try:
        asyncio.run(run_stack(_settings()))
    except (StackError, ConfigError) as exc:
        _fail(EXIT_UNAVAILABLE, str(exc))
    time.sleep(0.3)  # let the SDK's runtime threads wind down before the interpreter exits


@app.command()
def down(timeout: float = 60) -> None:
    """Stop an embedded stack started by `agentgate up` or `agentgate demo` (by its recorded PID)."""
    from agentgate.embedded import PID_FILE, read_pid_file

    settings = _settings()
    info = read_pid_file(settings)
    if info is None:
        out.print("no embedded stack is running")
        return
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        (settings.home_dir / PID_FILE).unlink(missing_ok=True)
        out.print("no embedded stack is running (removed a stale PID file)")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out.print(f"stopped the embedded stack (pid {pid})")
            return
        time.sleep(0.2)
    _fail(EXIT_UNAVAILABLE, f"the embedded stack (pid {pid}) did not stop within {timeout:.0f} s")


@app.command()
def worker() -> None:
    """Run a worker against the configured Temporal (AGENTGATE_TEMPORAL_ADDRESS)."""
    from agentgate.logs import configure_basic_logging
    from worker import run_worker

    configure_basic_logging()
    stop_requested = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_requested.set)
        await run_worker(_settings(), stop_requested)

    asyncio.run(main())
    time.sleep(0.3)


@app.command()
def api() -> None:
    """Run the HTTP API against the configured Temporal."""
    import uvicorn

    from agentgate.logs import configure_basic_logging
    from api.app import create_app

    configure_basic_logging()
    settings = _settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


# -- work orders ----------------------------------------------------------------------------


@app.command()
def submit(
    prompt: Annotated[str | None, typer.Option("--prompt", help="The task for the agent.")] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", metavar="PATH", help="A work order as YAML or JSON (`-` reads stdin): the request's base."
        ),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Over the file, e.g. max_iterations=5, delivery.mode=push, sandbox.network=full, "
            "labels=\\[a,b]; VALUE is YAML (text fields take it as typed). Repeatable.",  # \\[: not rich markup
        ),
    ] = None,
    path: Annotated[Path | None, typer.Option("--path", help="A local git repository (not modified in place).")] = None,
    git_url: Annotated[str | None, typer.Option("--git-url", help="A git URL to clone instead of --path.")] = None,
    github: Annotated[str | None, typer.Option("--github", help="A GitHub repository OWNER/NAME to clone.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Branch of the --git-url/--github source.")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent driver: command (default), claude-code, codex, opencode.")
    ] = None,
    agent_command: Annotated[
        str | None, typer.Option("--agent-command", help="Shell command (command driver).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="The agent's model.")] = None,
    gate: Annotated[list[str] | None, typer.Option("--gate", help="A gate command; repeatable.")] = None,
    # Unset options are not sent, so a --profile's values (or the work-order defaults) apply to them.
    max_iterations: Annotated[int | None, typer.Option("--max-iterations", help="Default 3.")] = None,
    max_wall_clock: Annotated[float | None, typer.Option("--max-wall-clock", help="Seconds; default 3600.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="1 (most urgent) .. 5; default 3")] = None,
    fairness_key: Annotated[
        str | None, typer.Option("--fairness-key", help="E.g. a tenant: keys take turns within a priority.")
    ] = None,
    max_queue_seconds: Annotated[
        float | None, typer.Option("--max-queue-seconds", help="Longest wait for a slot; then failed_timeout.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Token budget of the run.")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Cost budget of the run, USD.")] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="Convergence: fixed, hybrid, ralph, adaptive, manual.")
    ] = None,
    delivery: Annotated[str | None, typer.Option("--delivery", help="Delivery mode: local, push, github-pr.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Harness profile; the options given here override it.")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="A label; repeatable.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Submitting the same key again returns the same order.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the request that would be sent (JSON) and stop.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run ends; exit code says how.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Stream the run's progress until it ends (`agentgate follow`).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Submit a work order to the API: --file, then each --set, then the flags (the flags win)."""
    from agentgate.commands.submit_request import SubmitFlags, SubmitRequestError, build_request, load_file

    flags = SubmitFlags(
        prompt=prompt, path=path, git_url=git_url, github=github, branch=branch, agent=agent,
        agent_command=agent_command, model=model, gates=gate or [], max_iterations=max_iterations,
        max_wall_clock=max_wall_clock, priority=priority, fairness_key=fairness_key,
        max_queue_seconds=max_queue_seconds, max_tokens=max_tokens, max_cost=max_cost, profile=profile,
        labels=label or [], strategy=strategy, delivery=delivery,
    )  # fmt: skip
    try:
        body = build_request(load_file(file) if file is not None else None, assignments or [], flags)
    except SubmitRequestError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
        return
    if dry_run:
        sys.stdout.write(json.dumps(body, indent=None if as_json else 2) + "\n")
        return
    settings = _settings()
    with _client(settings) as client:
        try:
            created = client.submit(body, idempotency_key=idempotency_key)
        except ApiRequestError as exc:
            _api_failure(exc)
            return
        if follow:  # events (one JSON line each with --json) until the run ends; the run's exit code
            from agentgate.commands.follow import follow_run

            if not as_json:
                out.print(f"submitted {created['id']} ({created['status']})", highlight=False)
            try:
                raise typer.Exit(follow_run(client, created["id"], as_json=as_json))
            except ApiRequestError as exc:
                _api_failure(exc)
        if not wait:
            _emit(created, as_json, lambda d: f"{'submitted' if d.get('created', True) else 'already submitted'} "
                  f"{d['id']} ({d['status']}{_queue_place(d.get('position'))})")  # fmt: skip
            return
        outcome = _wait(client, created["id"], quiet=as_json)
    _emit(_compact(outcome), as_json, lambda d: _describe(d, settings))
    raise typer.Exit(_result_code(outcome))


def _queue_place(position: int | None) -> str:
    if position is None:
        return ""
    return ", holds a slot" if position == 0 else f", position {position} in the queue"


@app.command()
def status(work_order_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a work order's state, result and iterations."""
    settings = _settings()
    with _client(settings) as client:
        try:
            outcome = client.get(work_order_id)
        except ApiRequestError as exc:
            _api_failure(exc)
            return
    _emit(_compact(outcome) if not as_json else outcome, as_json, lambda d: _describe(d, settings))


@app.command("list")
def list_cmd(
    status_filter: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List work orders, newest first."""
    with _client(_settings()) as client:
        try:
            items = client.list(status_filter, limit)
        except ApiRequestError as exc:
            _api_failure(exc)
            return
    if as_json:
        out.print_json(json.dumps(items))
        return
    from rich.table import Table

    table = Table("id", "status", "state", "result", "agent", "created")
    for row in items:
        table.add_row(row["id"], row["status"] or "", row["state"] or "", row["result"] or "", row["agent"] or "",
                      (row["created_at"] or "")[:19])  # fmt: skip
    out.print(table)


@app.command()
def cancel(work_order_id: str) -> None:
    """Cancel a queued or running work order (the agent process tree is stopped)."""
    with _client(_settings()) as client:
        try:
            client.cancel(work_order_id)
        except ApiRequestError as exc:
            if exc.status == 409:
                _fail(EXIT_FAILED, exc.message)
            _api_failure(exc)
    out.print(f"cancel requested for {work_order_id}")


@app.command()
def stop(work_order_id: str) -> None:
    """Ask a running work order to stop after its current iteration (ends a `manual` run)."""
    _simple(lambda c: c.stop(work_order_id), f"stop requested for {work_order_id}")


@app.command()
def kill(work_order_id: str, reason: Annotated[str, typer.Option("--reason")] = "killed by operator") -> None:
    """Terminate a work order at once; its agent process tree is stopped."""
    _simple(lambda c: c.kill(work_order_id, reason), f"killed {work_order_id}")


@app.command()
def rerun(work_order_id: str) -> None:
    """Run a finished work order again (a new run of the same id)."""
    _simple(lambda c: c.rerun(work_order_id), f"re-running {work_order_id}")


def _simple(call, message: str) -> None:
    with _client(_settings()) as client:
        try:
            call(client)
        except ApiRequestError as exc:
            if exc.status == 409:
                _fail(EXIT_FAILED, exc.message)
            _api_failure(exc)
    out.print(message)


@app.command()
def demo(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Start the embedded stack if needed, run the sample work order to `passed`, show where to look."""
    from agentgate.demo.runner import run_demo

    raise typer.Exit(run_demo(_settings(), as_json=as_json))


# -- output helpers -----------------------------------------------------------------------


def _wait(client: AgentGateClient, work_order_id: str, quiet: bool, poll: float = 0.5) -> dict[str, Any]:
    last = None
    while True:
        try:
            outcome = client.get(work_order_id)
        except ApiRequestError as exc:
            _api_failure(exc)
            raise
        marker = (outcome.get("status"), outcome.get("state"), outcome.get("iterations"))
        if marker != last and not quiet:
            iteration = outcome.get("iterations") or 0
            err.print(f"  iteration {iteration} · {outcome.get('state')}", highlight=False)
            last = marker
        if outcome.get("status") in ("succeeded", "failed", "canceled"):
            return outcome
        time.sleep(poll)


def _compact(outcome: dict[str, Any]) -> dict[str, Any]:
    delivery = outcome.get("delivery") or {}
    return {
        "id": outcome.get("id") or outcome.get("work_order_id"),
        "run_id": outcome.get("run_id"),
        "status": outcome.get("status"),
        "state": outcome.get("state"),
        "result": outcome.get("result"),
        "iterations": outcome.get("iterations"),
        "partial": outcome.get("partial"),
        "error": outcome.get("error"),
        "error_type": (outcome.get("build_error") or {}).get("type"),
        "branch": delivery.get("branch"),
        "commit": delivery.get("commit"),
        "delivered_to": delivery.get("target"),
        "tokens": outcome.get("tokens"),
        "cost_usd": outcome.get("cost_usd"),
        "links": outcome.get("links"),
        "workspace_moves": outcome.get("workspace_moves") or [],
    }


def _describe(d: dict[str, Any], settings: Settings) -> str:
    lines = [f"{d['id']}: {d['status']} ({d['state']})" + (f", result {d['result']}" if d.get("result") else "")]
    if d.get("iterations") is not None:
        lines.append(f"  iterations  {d['iterations']}")
    if d.get("error"):
        lines.append(f"  error       [{d.get('error_type')}] {d['error']}")
    if d.get("branch"):
        lines.append(f"  branch      {d['branch']} @ {(d.get('commit') or '')[:12]} in {d.get('delivered_to')}")
    for move in d.get("workspace_moves") or []:  # the worker holding the workspace was lost (checkpoints)
        lines.append(f"  moved       from host {move['from_host']} to host {move['to_host']} at iteration "
                     f"{move['iteration']} ({move['phase']}), from {move['checkpoint_ref']}")  # fmt: skip
    links = d.get("links") or {}
    if links.get("temporal_ui"):
        lines.append(f"  Temporal UI {links['temporal_ui']}")
    if links.get("artifacts"):
        lines.append(f"  artifacts   {links['artifacts']}")
    return "\n".join(lines)


def _spawn_detached_stack(settings: Settings) -> subprocess.Popen:
    log_dir = settings.home_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "up.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "agentgate.cli", "up"], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def main() -> None:
    app()


register_commands(app)


if __name__ == "__main__":
    main()
