"""What every `agentgate` command shares: the Typer app, consoles, settings, the API client, exit codes.

Exit codes scripts can rely on: 0 success (a waited-for run passed), 1 the run did not
pass (or the request conflicts with the order's state), 2 bad input, 3 the service is
unreachable or failed, 4 the run was canceled.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from agentgate.client import AgentGateClient, ApiRequestError
from agentgate.config import ConfigError, Settings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EXIT_CANCELED = 0, 1, 2, 3, 4

app = typer.Typer(add_completion=False, no_args_is_help=True, help="AgentGate: run coding agents until verified.")
out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]).upper() if first.get("loc") else "CONFIG_FILE"
        _fail(EXIT_BAD_INPUT, f"invalid setting AGENTGATE_{where}: {first['msg']}")
        raise  # unreachable
    except ConfigError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
        raise  # unreachable


def _fail(code: int, message: str) -> None:
    # Escaped: a message quoting the input (`--set labels=[a`) must print as given, not as rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _client(settings: Settings) -> AgentGateClient:
    url = os.environ.get("AGENTGATE_API_URL") or settings.api_url
    return AgentGateClient(url, api_key=os.environ.get("AGENTGATE_API_KEY") or settings.api_key)


def _api_failure(exc: ApiRequestError) -> None:
    if exc.status == 0 or exc.status >= 500:
        _fail(EXIT_UNAVAILABLE, exc.message)
    if exc.status == 404:
        _fail(EXIT_BAD_INPUT, exc.message)
    _fail(EXIT_BAD_INPUT, exc.message)


def _result_code(outcome: dict[str, Any]) -> int:
    if outcome.get("status") == "succeeded":
        return EXIT_OK
    if outcome.get("status") == "canceled":
        return EXIT_CANCELED
    return EXIT_FAILED


def _emit(data: dict[str, Any], as_json: bool, human) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(human(data), highlight=False, soft_wrap=True)
