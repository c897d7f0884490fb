"""Command groups of the `agentgate` CLI, one module per concern, each adding itself to the root app."""

from __future__ import annotations

import typer

from agentgate.commands import admin, follow, profiles, queue, rewind


def register_commands(app: typer.Typer) -> None:
    for module in (queue, profiles, admin, follow, rewind):
        module.register(app)
