"""`agentgate rewind ID --to-iteration N`: a new run of a finished work order from checkpoint N.

Every iteration's commit is kept as a durable checkpoint (agentgate/checkpoints.py); a
rewind starts a new run of the same work order whose iteration 1 builds on checkpoint N,
optionally with another agent. The earlier runs stay in history (`agentgate status`, the
Temporal Web UI).
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentgate.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, _api_failure, _client, _emit, _fail, _settings
from agentgate.client import ApiRequestError


def rewind(
    work_order_id: str,
    to_iteration: Annotated[int, typer.Option("--to-iteration", help="Checkpoint (iteration number) to start from.")],
    agent: Annotated[str | None, typer.Option("--agent", help="Another agent driver for the new run.")] = None,
    agent_command: Annotated[
        str | None, typer.Option("--agent-command", help="The shell command, with --agent command.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Rewind this run instead of the latest.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start a new run of a finished work order from the checkpoint of iteration N (optionally another agent)."""
    if to_iteration < 1:
        _fail(EXIT_BAD_INPUT, f"--to-iteration must be 1 or more, got {to_iteration}")
    if agent_command is not None and agent not in (None, "command"):
        _fail(EXIT_BAD_INPUT, f"--agent-command goes with --agent command, not --agent {agent}")
    spec: str | dict | None = agent
    if agent_command is not None:
        spec = {"driver": "command", "command": agent_command}
    with _client(_settings()) as client:
        try:
            result = client.rewind(work_order_id, to_iteration, agent=spec, run_id=run_id)
        except ApiRequestError as exc:
            if exc.status == 409:
                _fail(EXIT_FAILED, exc.message)
            _api_failure(exc)
            return

    def human(data: dict) -> str:
        src = data["resume_from"]
        return (
            f"rewound {data['id']}: new run {data['run_id']} starts from iteration {src['iteration']} "
            f"of run {src['run_id']} (commit {src['commit'][:12]}) with agent {data['agent']}"
        )

    _emit(result, as_json, human)


def register(app: typer.Typer) -> None:
    """Add `rewind` to the root app."""
    app.command(name="rewind")(rewind)
