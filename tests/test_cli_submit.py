"""`agentgate submit` takes every work-order field: --file, then --set, then the flags.

The merge itself is tested directly (agentgate/commands/submit_request.py); the command runs as
a real subprocess, first without any service (bad input, --dry-run), then against the real API
over HTTP with a real worker on the dev server, where the work order the run actually received
(its `work-order.json`, read back through the API) must carry what --file and --set gave.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentgate import service
from agentgate.commands.submit_request import (
    FIELDS,
    SubmitFlags,
    SubmitRequestError,
    build_request,
    load_file,
    parse_assignment,
)
from tests.conftest import running_api, running_worker

CLI = [sys.executable, "-m", "agentgate.cli"]


def _git_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


# -- the merge ------------------------------------------------------------------------------------


def test_flags_win_over_set_which_wins_over_the_file(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    base = {
        "task_prompt": "from the file",
        "workspace_source": "https://example.com/acme/widgets.git",
        "agent": {"driver": "command", "command": "make fix", "options": {"keep": 1}},
        "max_iterations": 4,
        "priority": 4,
        "labels": ["file"],
        "delivery": {"mode": "push", "draft": False},
    }
    flags = SubmitFlags(max_iterations=2, agent_command="make better", labels=["flag"], path=repo)
    sets = ["max_iterations=3", "priority=5", "labels=[a, b]", "delivery.mode=github-pr", "sandbox.network=full",
            "convergence={strategy: hybrid, bonus_iterations: 0}", "agent.options.extra=[1, 2]"]  # fmt: skip
    body = build_request(base, sets, flags)
    assert body["max_iterations"] == 2  # file 4 < --set 3 < flag 2
    assert body["priority"] == 5  # the file's, replaced by --set; no flag
    assert body["labels"] == ["flag"]  # a repeatable flag replaces the list
    assert body["agent"] == {"driver": "command", "command": "make better", "options": {"keep": 1, "extra": [1, 2]}}
    assert body["delivery"] == {"mode": "github-pr", "draft": False}  # --set changes one key, keeps the others
    assert body["sandbox"] == {"network": "full"}
    assert body["convergence"] == {"strategy": "hybrid", "bonus_iterations": 0}
    assert body["workspace_source"] == {"type": "local", "path": str(repo.resolve())}  # --path replaces the source
    assert base["max_iterations"] == 4 and base["labels"] == ["file"]  # the caller's data is not changed


def test_only_given_fields_are_sent_so_a_profile_fills_the_rest(tmp_path):
    body = build_request(None, [], SubmitFlags(prompt="p", path=_git_repo(tmp_path / "r"), agent_command="true",
                                               profile="ci-focused"))  # fmt: skip
    assert set(body) == {"task_prompt", "workspace_source", "agent", "profile"}
    assert body["agent"] == {"command": "true"}


def test_set_reads_yaml_but_keeps_text_fields_as_typed():
    assert parse_assignment("max_iterations=5") == (["max_iterations"], 5)
    assert parse_assignment("labels=[a,b]") == (["labels"], ["a", "b"])
    assert parse_assignment("delivery.draft=false") == (["delivery", "draft"], False)
    assert parse_assignment("agent.options={effort: high, n: 2}") == (["agent", "options"], {"effort": "high", "n": 2})
    assert parse_assignment("max_cost_usd=") == (["max_cost_usd"], None)
    assert parse_assignment("sandbox=null") == (["sandbox"], None)
    # Text fields: ': ' is not a mapping, 'no' is not a boolean, a date stays text.
    assert parse_assignment("task_prompt=Fix: the bug = now") == (["task_prompt"], "Fix: the bug = now")
    assert parse_assignment("delivery.branch=no") == (["delivery", "branch"], "no")
    assert parse_assignment("sandbox.network=full") == (["sandbox", "network"], "full")
    assert parse_assignment("delivery.mode=github") == (["delivery", "mode"], "github")  # the API judges the value
    assert parse_assignment('task_prompt="quoted: yes"') == (["task_prompt"], "quoted: yes")
    assert parse_assignment("labels=[2024-01-02]") == (["labels"], ["2024-01-02"])  # YAML dates as JSON text


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("max_iterations", "expected FIELD=VALUE"),
        ("=5", "field name before '=' is empty"),
        ("harness.max_iterations=5", "unknown work-order field 'harness'; the fields are: task_prompt"),
        ("delivery..mode=push", "has an empty part"),
        ("labels=[a, b", "cannot read '[a, b' as a YAML value"),
        ("agent.options={a: 1", "cannot read"),
    ],
)
def test_bad_set_is_one_clear_line(assignment, message):
    with pytest.raises(SubmitRequestError) as caught:
        parse_assignment(assignment)
    text = str(caught.value)
    assert text.startswith(f"--set {assignment}: ") and message in text and "\n" not in text


def test_set_inside_a_value_that_is_not_a_mapping():
    with pytest.raises(SubmitRequestError, match=r"cannot set a field inside agent: it is a string"):
        build_request({"agent": "claude-code"}, ["agent.model=opus"])
    # A workspace source in a short form is expanded, so one of its fields can be set.
    body = build_request({"task_prompt": "t", "agent": {}, "workspace_source": "git@example.com:o/r.git"},
                         ["workspace_source.branch=dev"])  # fmt: skip
    assert body["workspace_source"] == {"type": "git", "url": "git@example.com:o/r.git", "branch": "dev"}


def test_workspace_source_flags(tmp_path):
    common = {"prompt": "t", "agent_command": "true"}
    body = build_request(None, [], SubmitFlags(github="acme/widgets", branch="main", **common))
    assert body["workspace_source"] == {"type": "github", "repo": "acme/widgets", "branch": "main"}
    body = build_request(None, [], SubmitFlags(git_url="https://github.com/acme/widgets", **common))
    assert body["workspace_source"] == {"url": "https://github.com/acme/widgets"}
    with pytest.raises(SubmitRequestError, match="only one workspace source, not --path and --github"):
        build_request(None, [], SubmitFlags(path=tmp_path, github="a/b", **common))
    with pytest.raises(SubmitRequestError, match="--branch needs a git or GitHub source"):
        build_request(None, [], SubmitFlags(path=_git_repo(tmp_path / "r"), branch="dev", **common))
    with pytest.raises(SubmitRequestError, match="not a git repository"):
        build_request(None, [], SubmitFlags(path=tmp_path, **common))


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ({}, "the task must not be empty: give --prompt"),
        ({"task_prompt": "  "}, "the task must not be empty"),
        ({"task_prompt": "t"}, "no workspace source: give --path DIR, --git-url URL or --github OWNER/REPO"),
        ({"task_prompt": "t", "workspace_source": "/r"}, "no agent: give --agent-command CMD"),
    ],
)
def test_required_fields_are_named(base, message):
    with pytest.raises(SubmitRequestError, match=message):
        build_request(base)


def test_load_file_yaml_json_and_stdin(tmp_path):
    yaml_file = tmp_path / "wo.yaml"
    yaml_file.write_text("task_prompt: |\n  line one\n  line two\nmax_iterations: 2\ndelivery: {mode: push}\n")
    assert load_file(str(yaml_file)) == {
        "task_prompt": "line one\nline two\n", "max_iterations": 2, "delivery": {"mode": "push"}
    }  # fmt: skip
    json_file = tmp_path / "wo.json"
    json_file.write_text('{\n\t"task_prompt": "tabs are fine in JSON",\n\t"priority": 1\n}')
    assert load_file(str(json_file)) == {"task_prompt": "tabs are fine in JSON", "priority": 1}
    assert load_file("-", stdin=io.StringIO("labels: [x]")) == {"labels": ["x"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must hold a mapping of work-order fields (task_prompt: ..., agent: ...), not a list"),
        ("just text", "must hold a mapping of work-order fields (task_prompt: ..., agent: ...), not a string"),
        ("", "is empty"),
        ("task_prompt: [unclosed\n", "not valid YAML or JSON at line 2"),
        ("task_prompt: t\nharness: {}\n", "unknown work-order field 'harness'"),
    ],
)
def test_bad_file_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "wo.yaml"
    path.write_text(text)
    with pytest.raises(SubmitRequestError) as caught:
        load_file(str(path))
    assert str(caught.value).startswith(f"--file {path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(SubmitRequestError, match="no such file"):
        load_file(str(tmp_path / "missing.yaml"))


def test_every_work_order_field_can_be_set():
    for name in FIELDS:
        path, _ = parse_assignment(f"{name}=null")
        assert path == [name]


# -- the command, without a service -----------------------------------------------------------------


def _run(*args: str, stdin: str | None = None, api_url: str = "http://127.0.0.1:9", home: Path) -> tuple[int, str, str]:
    env = {**os.environ, "AGENTGATE_API_URL": api_url, "AGENTGATE_HOME": str(home)}
    proc = subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "list.yaml").write_text("- 1\n")
    cases = [
        (["--file", str(tmp_path / "list.yaml")], "must hold a mapping"),
        (["--prompt", "t", "--set", "nothing"], "--set nothing: expected FIELD=VALUE"),
        (["--prompt", "t", "--set", "harness.max_iterations=5"], "unknown work-order field 'harness'"),
        (["--prompt", "t", "--set", "labels=[a"], "cannot read '[a' as a YAML value"),
        (["--prompt", "t", "--agent-command", "true"], "no workspace source"),
    ]
    for args, message in cases:
        code, out, err = _run("submit", *args, home=home)
        assert code == 2, (args, out, err)
        assert out == "" and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_cli_dry_run_prints_the_merged_request(tmp_path):
    repo = _git_repo(tmp_path / "repo")
    doc = "task_prompt: from stdin\nagent: {driver: command, command: make}\nmax_iterations: 9\n"
    code, out, err = _run(
        "submit", "--file", "-", "--set", "max_iterations=4", "--set", "delivery.mode=push", "--path", str(repo),
        "--priority", "1", "--strategy", "adaptive", "--dry-run", stdin=doc, home=tmp_path / "home",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {
        "task_prompt": "from stdin",
        "agent": {"driver": "command", "command": "make"},
        "max_iterations": 4,
        "delivery": {"mode": "push"},
        "workspace_source": {"type": "local", "path": str(repo.resolve())},
        "priority": 1,
        "convergence": {"strategy": "adaptive"},
    }


# -- the command, against the real API and a real worker ----------------------------------------------


async def _cli(*args: str, port: int, settings) -> tuple[int, str, str]:
    env = {**os.environ, "AGENTGATE_API_URL": f"http://127.0.0.1:{port}", "AGENTGATE_HOME": str(settings.home)}
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode, out.decode(), err.decode()


def _port(http) -> int:
    return int(str(http.base_url).rstrip("/").rsplit(":", 1)[1])


async def test_submit_file_and_sets_reach_the_work_order(dev_env, settings, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)  # fmt: skip
    wo_file = tmp_path / "wo.yaml"
    wo_file.write_text(
        "task_prompt: |\n  Write NOTES.md.\n  Keep it short.\n"
        f"workspace_source: {{type: local, path: {repo}}}\n"
        "agent: {driver: command, command: 'echo notes > NOTES.md', options: {note: from-file}}\n"
        "gates: ['test -f NOTES.md']\n"
        "max_iterations: 4\n"
        "priority: 4\n"
        "delivery: {mode: local, labels: [bot], draft: false}\n"
        "convergence: {strategy: hybrid, base_iterations: 1, bonus_iterations: 0}\n"
    )
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        port = _port(http)
        code, out, err = await _cli(
            "submit", "--file", str(wo_file),
            "--set", "max_iterations=3", "--set", "labels=[from-set, cli]", "--set", "verify_timeout_seconds=900",
            "--set", "protected_paths=[docs/**]", "--set", "delivery.push_every_iteration=true",
            "--set", "sandbox.provider=none", "--set", "sandbox.network=full",
            "--set", "task_prompt=Write NOTES.md: keep it short.",
            "--max-iterations", "2", "--priority", "2", "--idempotency-key", f"cli-{settings.task_queue}",
            "--wait", "--json", port=port, settings=settings,
        )  # fmt: skip
        assert code in (0, 1), out + err  # the run ended (passed: 0, did not pass: 1); the fields are the point
        outcome = json.loads(out.splitlines()[-1])
        wo_id = outcome["id"]
        assert outcome["status"] in ("succeeded", "failed")

        # What the run received, read back through the API (its work-order.json).
        response = await http.get(f"/api/v1/work-orders/{wo_id}/artifacts/work-order.json")
        assert response.status_code == 200, response.text
        order = response.json()
        assert order["task_prompt"] == "Write NOTES.md: keep it short."  # --set over the file, text as typed
        assert order["workspace_source"] == {"type": "local", "path": str(repo)}
        assert order["agent"]["command"] == "echo notes > NOTES.md"
        assert order["agent"]["options"] == {"note": "from-file"}
        assert [g["command"] for g in order["gates"]] == ["test -f NOTES.md"]
        assert order["max_iterations"] == 2  # file 4 < --set 3 < --max-iterations 2
        assert order["priority"] == 2
        assert order["labels"] == ["from-set", "cli"]
        assert order["verify_timeout_seconds"] == 900
        assert order["protected_paths"] == ["docs/**"]
        assert order["delivery"]["mode"] == "local" and order["delivery"]["labels"] == ["bot"]
        assert order["delivery"]["draft"] is False and order["delivery"]["push_every_iteration"] is True
        assert order["convergence"]["strategy"] == "hybrid" and order["convergence"]["bonus_iterations"] == 0
        assert order["sandbox"]["provider"] == "none" and order["sandbox"]["network"] == "full"
        # The same as Temporal holds as the run's input.
        started = await service.original_work_order(dev_env.client, wo_id)
        assert started.labels == ["from-set", "cli"] and started.sandbox and started.sandbox.network == "full"

        # The same idempotency key names the same order.
        code, out, err = await _cli(
            "submit", "--file", str(wo_file), "--idempotency-key", f"cli-{settings.task_queue}",
            port=port, settings=settings,
        )  # fmt: skip
        assert code == 0, err
        assert out.startswith(f"already submitted {wo_id} ("), out

        # The API's 422 reaches the terminal naming the field; nothing is started.
        for bad, field in (("delivery.mode=github", "delivery.mode"), ("max_iterations=0", "max_iterations"),
                           ("sandbox.network=everything", "sandbox.network")):  # fmt: skip
            code, out, err = await _cli("submit", "--file", str(wo_file), "--set", bad, port=port, settings=settings)
            assert code == 2 and out == "", (bad, out, err)
            assert f"body.{field}" in err and len(err.strip().splitlines()) == 1, (bad, err)
