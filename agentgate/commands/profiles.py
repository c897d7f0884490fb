"""`agentgate profiles …`: list, show, create, validate and delete harness profiles through the API.

A file given with `--file` is parsed here first, so a mistake is reported with the file's own
name and line (`team.yaml, line 4: unknown key ...`) before anything is sent; the API then
checks what only it can (the `extends` chain, the built-ins, the profiles that depend on it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentgate.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    _api_failure,
    _client,
    _emit,
    _fail,
    _settings,
    out,
)
from agentgate.client import ApiRequestError

profiles_app = typer.Typer(
    help="Harness profiles: named, inheritable work-order settings (docs/profiles.md).", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only.")]
NameArg = Annotated[str, typer.Argument(help="Profile name: 1-63 of a-z, 0-9, '-', '_'.")]


def register(app: typer.Typer) -> None:
    """Add `agentgate profiles` to the root app."""
    app.add_typer(profiles_app, name="profiles")


def _check_name(name: str) -> None:
    from agentgate.profiles import ProfileError, check_name

    try:
        check_name(name)
    except ProfileError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))


def _read_file(name: str, file: Path) -> dict[str, Any]:
    """The document in `file`, checked locally (keys, types, line numbers); exits 2 on any problem."""
    from agentgate.profiles import ProfileError, parse_profile_text

    try:
        text = file.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(EXIT_BAD_INPUT, f"--file {file}: cannot read it: {exc}")
        raise  # unreachable
    try:
        return parse_profile_text(text, name, str(file)).data
    except ProfileError as exc:
        _fail(EXIT_BAD_INPUT, str(exc))
        raise  # unreachable


def _call(fn):
    """Run one client call; 409 exits 1 (a conflict with what exists), other API errors by their kind."""
    with _client(_settings()) as client:
        try:
            return fn(client)
        except ApiRequestError as exc:
            if exc.status == 409:
                _fail(EXIT_FAILED, exc.message)
            _api_failure(exc)


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip()


@profiles_app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List built-in and user profiles."""
    items = _call(lambda c: c.list_profiles())
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    from rich.table import Table

    table = Table("name", "kind", "extends", "description")
    for item in items:
        kind = "built-in" if item.get("builtin") else "user"
        about = f"[red]invalid: {item['error']}[/]" if item.get("error") else (item.get("description") or "")
        table.add_row(item["name"], kind, item.get("extends") or "", about)
    out.print(table)


@profiles_app.command("show")
def show(
    name: NameArg,
    resolve: Annotated[bool, typer.Option("--resolve", help="Show the merged settings, chain and hash.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a profile as written, or with --resolve as every run using it would get it."""
    _check_name(name)
    data = _call(lambda c: c.get_profile(name, resolve=resolve))

    def human(d: dict[str, Any]) -> str:
        kind = "built-in" if d.get("builtin") else d.get("source", "user")
        if not resolve:
            return f"# {d['name']} ({kind})\n{_yaml(d['document']) if d['document'] else '{}'}"
        return f"# {d['name']} ({kind})\n# chain: {' → '.join(d['chain'])}\n# hash: {d['hash']}\n{_yaml(d['resolved'])}"

    _emit(data, as_json, human)


@profiles_app.command("create")
def create(
    name: NameArg,
    file: Annotated[Path, typer.Option("--file", "-f", help="The profile as a YAML file.")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing user profile.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a user profile from a YAML file (it may `extends` a built-in)."""
    _check_name(name)
    document = _read_file(name, file)
    if replace:
        data = _call(lambda c: c.replace_profile(name, document))
    else:
        data = _call(lambda c: c.create_profile(name, document))
    _emit(data, as_json, lambda d: f"saved profile {d['name']} ({' → '.join(d['chain'])}; hash {d['hash'][:12]})")


@profiles_app.command("validate")
def validate(
    name: NameArg,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Check this YAML file as NAME instead of the stored one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve a profile (or a file, as that profile) and report problems; exit 2 when invalid."""
    _check_name(name)
    document = _read_file(name, file) if file is not None else None
    data = _call(lambda c: c.validate_profile(name, document))
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    elif data.get("valid"):
        out.print(f"profile {name} is valid (chain: {' → '.join(data['chain'])}; hash {data['hash']})", highlight=False)
    if not data.get("valid"):
        if as_json:
            raise typer.Exit(EXIT_BAD_INPUT)
        _fail(EXIT_BAD_INPUT, data.get("message") or f"profile {name} is invalid")


@profiles_app.command("delete")
def delete(name: NameArg, as_json: JsonOpt = False) -> None:
    """Delete a user profile (built-ins and profiles others extend cannot be deleted)."""
    _check_name(name)
    data = _call(lambda c: c.delete_profile(name))
    _emit(data, as_json, lambda d: f"deleted profile {d['name']}")
