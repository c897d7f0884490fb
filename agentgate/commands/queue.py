"""`agentgate queue stats|health|position ID|capacity N`: the global queue, through the API.

Exit codes: 0 success (health: healthy), 1 health degraded, 2 bad input (an unknown id, a
capacity below 1), 3 the API or the queue unreachable (health: unhealthy).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentgate.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    _api_failure,
    _client,
    _emit,
    _fail,
    _settings,
)
from agentgate.client import ApiRequestError
from workflows.admission import MAX_CAPACITY

queue_app = typer.Typer(
    help="The global queue: stats, health, one order's position, the capacity.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only.")]


def register(app: typer.Typer) -> None:
    """Add the `queue` command group to the root app."""
    app.add_typer(queue_app, name="queue")


def _request(call) -> Any:
    settings = _settings()
    with _client(settings) as client:
        try:
            return call(client)
        except ApiRequestError as exc:
            _api_failure(exc)


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _stats_text(d: dict[str, Any]) -> str:
    prio = ", ".join(f"p{p}: {n}" for p, n in d.get("by_priority", {}).items() if n)
    lines = [
        f"capacity {d['capacity']}: {d['running']} running, {d['queued']} queued" + (f" ({prio})" if prio else ""),
        f"oldest wait: {_seconds(d.get('oldest_wait_seconds')) if d.get('queued') else '-'}; "
        f"average slot hold: {_seconds(d.get('average_hold_seconds'))}",
    ]
    return "\n".join(lines)


@queue_app.command("stats")
def stats(as_json: JsonOption = False) -> None:
    """Queued and running orders, capacity, queued per priority (1 = most urgent), oldest wait."""
    _emit(_request(lambda c: c.queue_stats()), as_json, _stats_text)


def _health_text(d: dict[str, Any]) -> str:
    color = {"healthy": "green", "degraded": "yellow"}.get(d["status"], "red")
    lines = [f"[bold {color}]{d['status']}[/]"] + [f"  - {reason}" for reason in d.get("reasons", [])]
    return "\n".join(lines)


@queue_app.command("health")
def health(as_json: JsonOption = False) -> None:
    """healthy (exit 0), degraded (1) or unhealthy (3), with the reasons."""
    report = _request(lambda c: c.queue_health())
    _emit(report, as_json, _health_text)
    raise typer.Exit({"healthy": EXIT_OK, "degraded": EXIT_FAILED}.get(report["status"], EXIT_UNAVAILABLE))


def _position_text(d: dict[str, Any]) -> str:
    if d.get("position") is None:
        return f"{d['id']} is not in the queue (status {d.get('status')})"
    if d["position"] == 0:
        return f"{d['id']} holds a slot (status {d.get('status')})"
    return (
        f"{d['id']}: position {d['position']} ({d['ahead']} ahead), "
        f"estimated wait {_seconds(d.get('estimated_wait_seconds'))}"
    )


@queue_app.command("position")
def position(work_order_id: str, as_json: JsonOption = False) -> None:
    """Where an order stands: 1 = next to get a slot, 0 = holds one."""
    _emit(_request(lambda c: c.queue_position(work_order_id)), as_json, _position_text)


@queue_app.command("capacity")
def capacity(
    value: Annotated[int, typer.Argument(help="Agent runs at once across all workers (1-10000).")],
    as_json: JsonOption = False,
) -> None:
    """Set the global capacity now (a larger one admits queued orders at once)."""
    if not 1 <= value <= MAX_CAPACITY:
        _fail(EXIT_BAD_INPUT, f"capacity must be from 1 to {MAX_CAPACITY}, got {value}")
    data = _request(lambda c: c.set_queue_capacity(value))
    _emit(data, as_json, lambda d: f"capacity is now {d['capacity']} ({d['running']} running, {d['queued']} queued)")
