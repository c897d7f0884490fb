"""`agentgate follow ID`: a run's progress, live, in the terminal (or as JSON lines), until it ends.

The events come from the API's SSE stream (`AgentGateClient.events`), which resumes with
`Last-Event-ID` after a dropped connection, so an API restart neither repeats nor loses a line.
The exit code is the run's, exactly as `submit --wait` reports it (`_result_code`): a script
can `agentgate follow wo_… && deploy`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from agentgate.cli_common import EXIT_BAD_INPUT, _api_failure, _client, _fail, _result_code, _settings, err, out
from agentgate.client import AgentGateClient, ApiRequestError

TERMINAL = ("run_completed", "run_canceled", "run_failed")
TEXT_CHARS = 160
# Verification checks that pass on every healthy run (gate integrity, contracts): shown only when they fail.
QUIET_LEVELS = {"integrity", "L0"}


def _short(text: Any, limit: int = TEXT_CHARS) -> str:
    first = " ".join(str(text or "").strip().splitlines()[:1])
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _seconds(ms: Any) -> str:
    return f"{ms / 1000:.1f} s" if isinstance(ms, (int, float)) else ""


def _tool_summary(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    args = tool.get("input")
    if isinstance(args, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description"):
            if args.get(key):
                return f"{tool.get('name', 'tool')} {_short(args[key], 100)}"
        args = json.dumps(args, separators=(",", ":"), default=str)
    return f"{tool.get('name', 'tool')} {_short(args, 100)}".rstrip()


class HumanView:
    """Turns events into the concise lines a person watches: iteration i/N, phases, gates, agent, totals."""

    def __init__(self, max_iterations: int | None = None) -> None:
        self.max_iterations = max_iterations
        self.iteration: int | None = None
        self.tokens = 0
        self.cost = 0.0
        self.last_tool: str | None = None

    def _iteration(self, n: Any) -> str:
        return f"{n}/{self.max_iterations}" if self.max_iterations else str(n)

    def _totals(self) -> str:
        parts = [f"{self.tokens:,} tokens"] if self.tokens else []
        if self.cost:
            parts.append(f"${self.cost:.4f}")
        return " · ".join(parts)

    def render(self, e: dict[str, Any]) -> Text | None:
        kind = e.get("type", "")
        n = e.get("iteration")
        if kind == "run_started":
            return Text(f"▶ {e.get('work_order_id')} run {str(e.get('run_id', ''))[:13]} started", style="bold")
        if kind == "phase_started" and e.get("phase") == "build":
            self.iteration = n
            driver = f" · {e['driver']}" if e.get("driver") else ""
            return Text(f"iteration {self._iteration(n)}{driver}", style="bold cyan")
        if kind == "phase_completed":
            return self._phase_done(e)
        if kind == "phase_failed":
            return Text(f"  {e.get('phase')}  failed: {_short(e.get('error'))}", style="red")
        if kind == "gate_checked":
            passed = bool(e.get("passed"))
            if passed and e.get("level") in QUIET_LEVELS:
                return None
            mark, style = ("✓", "green") if passed else ("✗", "red")
            line = f"    {mark} {e.get('gate')} ({e.get('level')}) {_seconds(e.get('duration_ms'))}".rstrip()
            if not passed:
                code = e.get("exit_code")
                line += (f" exit {code}" if code is not None else "") + (
                    f" → {e['output_ref']}" if e.get("output_ref") else ""
                )
            return Text(line, style=style)
        if kind == "agent_message":
            return Text(f"  agent    {_short(e.get('text'))}")
        if kind == "agent_tool_call":
            self.last_tool = _tool_summary(e.get("tool"))
            return Text(f"  tool     {self.last_tool}", style="magenta")
        if kind == "agent_tool_result":
            tool = e.get("tool") or {}
            return Text(f"  tool     {tool.get('name', 'tool')} failed", style="red") if tool.get("is_error") else None
        if kind == "agent_output":
            text = _short(e.get("text"))
            return Text(f"  │ {text}", style="dim") if text else None
        if kind == "iteration_completed":
            verdict, style = ("passed", "green") if e.get("passed") else ("failed", "yellow")
            parts = [f"iteration {self._iteration(n)} {verdict}"]
            if e.get("decision"):
                parts.append(f"decision {e['decision']}")
            if e.get("duration_ms") is not None:
                parts.append(_seconds(e["duration_ms"]))
            if self._totals():
                parts.append(self._totals())
            return Text(" · ".join(parts), style=style)
        if kind == "delivery_completed":
            commit = str(e.get("commit") or "")[:12]
            return Text(f"  delivered {e.get('branch')} @ {commit} → {e.get('target') or e.get('mode')}")
        if kind in ("pr_created", "pr_found"):
            return Text(f"  pull request {e.get('url')}")
        if kind == "ci_polled":
            return Text(f"  CI {e.get('state')}: {_short(e.get('summary'))}")
        if kind in TERMINAL:
            return self._end(e)
        if kind.endswith(("_failed", "_error", "_warning")):
            return Text(f"  {kind}: {_short(e.get('error') or e.get('message'))}", style="red")
        return None

    def _phase_done(self, e: dict[str, Any]) -> Text | None:
        phase = e.get("phase")
        took = _seconds(e.get("duration_ms"))
        if phase == "build":
            tokens = e.get("tokens") or {}
            self.tokens += sum(v for k, v in tokens.items() if isinstance(v, int) and k in ("input", "output"))
            self.cost += float(e.get("cost_usd") or 0)
            if e.get("canceled"):
                return Text("  build    canceled", style="yellow")
            status = f"exit {e.get('exit_code')}"
            if e.get("error_type"):
                status += f" [{e['error_type']}]"
            parts = [status, took, self._totals()]
            return Text("  build    " + " · ".join(p for p in parts if p), style=None if e.get("success") else "red")
        if phase == "snapshot":
            commit = str(e.get("commit") or "")[:12]
            files = e.get("files_changed") or 0
            return Text(f"  snapshot {commit} · {files} file{'' if files == 1 else 's'} "
                        f"+{e.get('insertions', 0)} -{e.get('deletions', 0)}")  # fmt: skip
        if phase == "verify":
            if e.get("passed"):
                return Text("  verify   passed", style="green")
            failed = ", ".join(map(str, e.get("failed") or [])) or e.get("failed_level") or "?"
            return Text(f"  verify   failed: {_short(failed)}", style="yellow")
        if phase == "feedback":
            return Text(f"  feedback {e.get('ref')} ({e.get('failures', 0)} failures)")
        if phase == "prepare":
            return Text(f"  prepare  workspace at {str(e.get('base_commit') or '')[:12]}")
        return None

    def _end(self, e: dict[str, Any]) -> Text:
        status = e.get("status") or e.get("type")
        style = {"succeeded": "bold green", "canceled": "bold yellow"}.get(str(status), "bold red")
        parts = [f"■ {status}"]
        if e.get("result"):
            parts[0] += f": {e['result']}"
        if e.get("iterations") is not None:
            parts.append(f"{e['iterations']} iteration{'s' if e['iterations'] != 1 else ''}")
        if e.get("duration_ms") is not None:
            parts.append(_seconds(e["duration_ms"]))
        if self._totals():
            parts.append(self._totals())
        if e.get("error"):
            parts.append(_short(e["error"]))
        return Text(" · ".join(parts), style=style)


def _max_iterations(client: AgentGateClient, work_order_id: str, run_id: str | None) -> int | None:
    """The order's iteration limit, for "iteration i/N" (best effort: the run's work-order.json)."""
    try:
        order = client.artifact(work_order_id, "work-order.json", run_id=run_id)
        value = order.get("max_iterations") if isinstance(order, dict) else None
        return value if isinstance(value, int) else None
    except ApiRequestError:
        return None


def follow_run(
    client: AgentGateClient,
    work_order_id: str,
    *,
    as_json: bool = False,
    after: int = 0,
    run_id: str | None = None,
    reconnect_timeout: float = 60.0,
) -> int:
    """Print the run's events until it ends; returns its exit code (0 passed, 1 not passed, 4 canceled)."""
    view = HumanView()
    asked = False

    def reconnecting(last_seq: int, reason: str) -> None:
        err.print(f"  (stream interrupted: {_short(reason, 100)}; resuming after event {last_seq})", style="dim")

    last: dict[str, Any] | None = None
    for event in client.events(
        work_order_id, after=after, run_id=run_id, reconnect_timeout=reconnect_timeout, on_reconnect=reconnecting
    ):
        last = event
        if as_json:
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            continue
        if not asked and event.get("iteration") is not None:
            asked = True
            view.max_iterations = _max_iterations(client, work_order_id, event.get("run_id"))
        line = view.render(event)
        if line is not None:
            out.print(line, highlight=False, soft_wrap=True)
    if last is not None and last.get("type") in TERMINAL and last.get("status"):
        return _result_code({"status": last["status"]})
    return _result_code(client.get(work_order_id))


def register(app: typer.Typer) -> None:
    """Add `follow` to the root app."""

    @app.command()
    def follow(
        work_order_id: Annotated[str, typer.Argument(help="The work order (wo_…) to watch.")],
        as_json: Annotated[bool, typer.Option("--json", help="One event per line, as recorded.")] = False,
        after: Annotated[int, typer.Option("--after", help="Start after this event number (seq).")] = 0,
        run_id: Annotated[str | None, typer.Option("--run-id", help="A given run; default the latest.")] = None,
        reconnect_timeout: Annotated[
            float, typer.Option("--reconnect-timeout", help="Give up after this many seconds without the API.")
        ] = 60.0,
    ) -> None:
        """Stream a run's progress live until it ends; the exit code is the run's (as with `submit --wait`)."""
        if after < 0:
            _fail(EXIT_BAD_INPUT, f"--after {after}: must be a non-negative event number")
        settings = _settings()
        with _client(settings) as client:
            try:
                code = follow_run(client, work_order_id, as_json=as_json, after=after, run_id=run_id,
                                  reconnect_timeout=reconnect_timeout)  # fmt: skip
            except ApiRequestError as exc:
                _api_failure(exc)
                return
        raise typer.Exit(code)
