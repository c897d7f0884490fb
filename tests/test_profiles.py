"""Harness profiles: the loader (extends, deep merge, depth limit, cycles, unknown keys, hash), the API over
real HTTP (uvicorn on 127.0.0.1), work orders resolved with a profile on the real Temporal dev server and
worker, and the CLI as a subprocess against that API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentgate import service
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.models import WorkOrderRequest
from agentgate.profiles import (
    BUILTIN_NAMES,
    HARNESS_FIELDS,
    MAX_EXTENDS_DEPTH,
    ProfileApplyError,
    ProfileConflict,
    ProfileError,
    ProfileNotFound,
    ProfileStore,
    apply_profile,
    config_hash,
    deep_merge,
    parse_profile_text,
    profile_from_mapping,
)
from tests.conftest import DEMO_AGENT, running_api, running_worker

AGENTGATE = [sys.executable, "-m", "agentgate.cli"]


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def _request(**fields) -> WorkOrderRequest:
    base = {
        "task_prompt": "do it",
        "workspace_source": {"type": "local", "path": "/tmp/repo"},
        "agent": {"driver": "command", "command": "true"},
    }
    return WorkOrderRequest.model_validate({**base, **fields})


# -- loader ------------------------------------------------------------------------------------------


def test_builtins_resolve_and_default_equals_the_work_order_defaults():
    store = ProfileStore(None)
    assert store.names() == list(BUILTIN_NAMES) == ["default", "ci-focused", "rapid-iteration", "ralph-style"]
    defaults = _request().model_dump(mode="json")
    resolved = store.resolve("default")
    assert resolved.chain == ["default"] and resolved.builtin
    for field in HARNESS_FIELDS:
        assert resolved.settings[field] == defaults[field], field
    assert resolved.settings["agent"] == {"model": None, "options": {}}
    # Every other built-in extends default and changes something real.
    for name in BUILTIN_NAMES[1:]:
        other = store.resolve(name)
        assert other.chain == [name, "default"] and other.description
        assert other.hash != resolved.hash
    assert store.resolve("ci-focused").settings["gate_plan_source"] == "ci-workflow"
    assert store.resolve("ralph-style").settings["convergence"]["strategy"] == "ralph"
    assert store.resolve("rapid-iteration").settings["skip_levels"] == ["L2", "L3"]


def test_deep_merge_merges_mappings_and_replaces_lists_and_nulls():
    base = {"a": {"x": 1, "y": {"z": 2}}, "gates": ["one", "two"], "budget": 10}
    override = {"a": {"y": {"w": 3}}, "gates": ["three"], "budget": None}
    merged = deep_merge(base, override)
    assert merged == {"a": {"x": 1, "y": {"z": 2, "w": 3}}, "gates": ["three"], "budget": None}
    merged["a"]["y"]["z"] = 99
    assert base["a"]["y"]["z"] == 2 and override == {"a": {"y": {"w": 3}}, "gates": ["three"], "budget": None}


def test_extends_chain_deep_merges_in_order(tmp_path):
    user = tmp_path / "profiles"
    _write(user, "team", "extends: ci-focused\nconvergence:\n  bonus_iterations: 4\ndelivery:\n  ci:\n"
                         "    poll_interval_seconds: 10\ngates: [make lint, make test]\n")  # fmt: skip
    _write(user, "team-fast", "extends: team\ndescription: faster\nconvergence:\n  progress_threshold: 0.2\n"
                              "gates: [make test]\nmax_total_tokens: 1000\n")  # fmt: skip
    resolved = ProfileStore(user).resolve("team-fast")
    assert resolved.chain == ["team-fast", "team", "ci-focused", "default"]
    s = resolved.settings
    assert s["convergence"]["strategy"] == "hybrid"  # ci-focused
    assert s["convergence"]["bonus_iterations"] == 4  # team
    assert s["convergence"]["progress_threshold"] == 0.2  # team-fast
    assert [g["command"] for g in s["gates"]] == ["make test"]  # a list is replaced, not appended
    assert s["delivery"]["ci"]["poll_interval_seconds"] == 10 and s["delivery"]["ci"]["enabled"] is True
    assert s["protected_paths"] == [".github/workflows/**"] and s["max_total_tokens"] == 1000
    assert resolved.description == "faster"


def test_depth_limit(tmp_path):
    user = tmp_path / "profiles"
    for i in range(MAX_EXTENDS_DEPTH + 1):
        _write(user, f"p{i}", f"extends: p{i + 1}\n")
    _write(user, f"p{MAX_EXTENDS_DEPTH + 1}", "max_iterations: 7\n")
    store = ProfileStore(user)
    # p1 → … → p9 is exactly MAX_EXTENDS_DEPTH hops: allowed.
    assert store.resolve("p1").settings["max_iterations"] == 7
    with pytest.raises(ProfileError) as caught:
        store.resolve("p0")
    message = str(caught.value)
    assert f"deeper than {MAX_EXTENDS_DEPTH} levels" in message and "p0 → p1 → p2" in message
    assert "`extends`" in message and "line 1" in message


def test_cycle_is_an_error_naming_the_chain(tmp_path):
    user = tmp_path / "profiles"
    _write(user, "a", "extends: b\n")
    _write(user, "b", "max_iterations: 2\nextends: c\n")
    path_c = _write(user, "c", "description: loops\n\nextends: a\n")
    with pytest.raises(ProfileError) as caught:
        ProfileStore(user).resolve("a")
    assert "cycle: a → b → c → a" in str(caught.value)
    assert caught.value.source == str(path_c) and caught.value.problems[0].line == 3
    with pytest.raises(ProfileError, match="cycle: self → self"):
        parse_profile_text("extends: self\n", "self", "self.yaml")


def test_unknown_keys_and_bad_values_name_file_line_and_key(tmp_path):
    text = "description: typo\nextends: default\nmax_iteraions: 3\nconvergence:\n  stratgy: hybrid\n"
    with pytest.raises(ProfileError) as caught:
        parse_profile_text(text, "typo", "/x/typo.yaml")
    problems = {p.key: p for p in caught.value.problems}
    assert problems["max_iteraions"].line == 3 and "did you mean `max_iterations`" in problems["max_iteraions"].message
    assert problems["convergence.stratgy"].line == 5 and problems["convergence.stratgy"].message == "unknown key"
    assert "/x/typo.yaml, line 3" in str(caught.value)

    cases = [
        ("max_iterations: many\n", "max_iterations", 1),
        ("gates:\n  - command: make\n    timeout_seconds: -1\n", "gates.0.timeout_seconds", 3),
        ("task_prompt: nope\n", "task_prompt", 1),  # the task is the caller's, never a profile's
        ("agent:\n  driver: codex\n", "agent.driver", 2),  # so is the driver
        ("extends: Not A Name\n", "extends", 1),
        ("name: other\n", "name", 1),
        ("max_iterations: 3\nmax_iterations: 4\n", "max_iterations", 2),
        ("description: x\nmax_cost_usd: .inf\n", "max_cost_usd", 2),
        ("max_iterations: [\n", "", 2),
        ("- a list\n", "", 1),
    ]
    for text, key, line in cases:
        with pytest.raises(ProfileError) as caught:
            parse_profile_text(text, "bad", "bad.yaml")
        assert (caught.value.problems[0].key, caught.value.problems[0].line) == (key, line), (text, caught.value)
    with pytest.raises(ProfileError, match="`extends`: extends 'nowhere', which does not exist; available: default"):
        _write(tmp_path / "p", "orphan", "extends: nowhere\n")
        ProfileStore(tmp_path / "p").resolve("orphan")
    assert parse_profile_text("", "empty", "empty.yaml").data == {}


def test_hash_is_stable_and_follows_the_values(tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    default = store.resolve("default")
    assert default.hash == store.resolve("default").hash == config_hash(default.settings)
    assert len(default.hash) == 64
    # Same values, differently written: same hash. Descriptions are not configuration.
    a = profile_from_mapping({"gates": ["make test"], "convergence": {"strategy": "fixed"}}, "a", "body")
    gate = {"command": "make test", "timeout_seconds": 600}
    b = profile_from_mapping({"description": "other words", "gates": [gate]}, "b", "body")
    assert store.check_candidate(a).hash == store.check_candidate(b).hash
    # The inherited default plus nothing is the default.
    assert store.check_candidate(profile_from_mapping({"extends": "default"}, "c", "body")).hash == default.hash
    # Any value that changes, the hash changes; a known value pins the algorithm (sha256, canonical JSON).
    changed = store.check_candidate(profile_from_mapping({"extends": "default", "max_iterations": 4}, "d", "body"))
    assert changed.hash != default.hash
    assert config_hash({"b": [1, 2], "a": "é"}) == config_hash({"a": "é", "b": [1, 2]})
    assert config_hash({"a": 1}) == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"


def test_store_protects_builtins_and_dependents(tmp_path):
    user = tmp_path / "profiles"
    store = ProfileStore(user)
    with pytest.raises(ProfileConflict, match="built-in"):
        store.create(profile_from_mapping({"max_iterations": 1}, "default", "body"))
    with pytest.raises(ProfileConflict, match="built-in"):
        store.delete("ralph-style")
    store.create(profile_from_mapping({"extends": "rapid-iteration"}, "base", "body"))
    store.create(profile_from_mapping({"extends": "base", "max_iterations": 2}, "child", "body"))
    with pytest.raises(ProfileConflict, match="already exists"):
        store.create(profile_from_mapping({}, "base", "body"))
    with pytest.raises(ProfileConflict, match="extended by child"):
        store.delete("base")
    # A change that would make a dependent cycle is refused before anything is written.
    with pytest.raises(ProfileError, match="cycle: base → child → base"):
        store.replace(profile_from_mapping({"extends": "child"}, "base", "body"))
    assert store.load("base").extends == "rapid-iteration"
    # A user file named like a built-in is ignored: built-in names mean the same everywhere.
    _write(user, "default", "max_iterations: 99\n")
    assert store.resolve("default").settings["max_iterations"] == 3
    assert sorted(p.name for p in user.iterdir()) == ["base.yaml", "child.yaml", "default.yaml"]  # no temp files


def test_apply_profile_caller_fields_win_only_where_set(tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    request = _request(profile="ci-focused", max_iterations=2, convergence={"unchanged_limit": 5}, priority=3)
    resolved_request, resolved = apply_profile(request, store)
    assert resolved.name == "ci-focused" and resolved_request.profile == "ci-focused"
    assert resolved_request.max_iterations == 2  # set by the caller
    assert resolved_request.priority == 3  # explicitly set, although it equals the default
    assert resolved_request.max_wall_clock_seconds == 7200  # from the profile
    assert resolved_request.convergence.strategy == "hybrid" and resolved_request.convergence.unchanged_limit == 5
    assert resolved_request.protected_paths == [".github/workflows/**"]
    fast, _ = apply_profile(_request(profile="rapid-iteration"), store)
    assert fast.priority == 2 and fast.skip_levels == ["L2", "L3"]
    # Without a profile nothing changes.
    plain = _request(max_iterations=5)
    assert apply_profile(plain, store) == (plain, None)

    with pytest.raises(ProfileApplyError) as caught:
        apply_profile(_request(profile="nope"), store)
    assert caught.value.problems[0].field == "profile" and caught.value.available == list(BUILTIN_NAMES)
    with pytest.raises(ProfileApplyError, match="gates: gate_plan_source is 'profile' but profile 'default'"):
        apply_profile(_request(profile="default", gate_plan_source="profile"), store)
    with pytest.raises(ProfileNotFound):
        store.resolve("nope")


# -- the API over real HTTP ---------------------------------------------------------------------------


def _api(settings):
    """The real API on uvicorn; the profile routes never touch Temporal, so no server is needed for them."""
    return running_api(SimpleNamespace(client=None), settings)


async def test_profile_crud_over_http(settings):
    async with _api(settings) as http:
        items = (await http.get("/api/v1/profiles")).json()["items"]
        assert [(i["name"], i["builtin"]) for i in items] == [(n, True) for n in BUILTIN_NAMES]

        body = {"name": "team", "extends": "ci-focused", "description": "our CI", "gates": ["make test"]}
        created = await http.post("/api/v1/profiles", json=body)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/v1/profiles/team"
        assert created.json()["chain"] == ["team", "ci-focused", "default"]
        assert (settings.profiles_dir / "team.yaml").is_file()

        shown = (await http.get("/api/v1/profiles/team", params={"resolve": "true"})).json()
        assert shown["document"] == {k: v for k, v in body.items() if k != "name"}
        assert shown["chain"] == ["team", "ci-focused", "default"] and shown["hash"] == created.json()["hash"]
        assert shown["resolved"]["gates"][0]["command"] == "make test"
        assert shown["resolved"]["gate_plan_source"] == "ci-workflow"
        assert "resolved" not in (await http.get("/api/v1/profiles/team")).json()

        async def error(response, status, code, field=None):
            assert response.status_code == status, response.text
            err = response.json()["error"]
            assert err["code"] == code, err
            if field:
                assert any(d["field"] == field for d in err["details"]), err
                assert err["message"].startswith(field), err
            return err

        await error(await http.post("/api/v1/profiles", json=body), 409, "conflict")
        await error(await http.post("/api/v1/profiles", json={"name": "default"}), 409, "conflict")
        await error(
            await http.post("/api/v1/profiles", json={"extends": "default"}), 422, "validation_error", "body.name"
        )
        await error(
            await http.post("/api/v1/profiles", json={"name": "Bad Name"}), 422, "validation_error", "body.name"
        )
        typo = await error(await http.post("/api/v1/profiles", json={"name": "t", "max_iteraions": 3}), 422,
                           "validation_error", "body.max_iteraions")  # fmt: skip
        assert "did you mean `max_iterations`" in typo["message"]
        await error(await http.post("/api/v1/profiles", json={"name": "t", "convergence": {"strategy": "x"}}), 422,
                    "validation_error", "body.convergence.strategy")  # fmt: skip
        await error(await http.post("/api/v1/profiles", json={"name": "t", "extends": "missing"}), 422,
                    "validation_error", "body.extends")  # fmt: skip
        await error(await http.post("/api/v1/profiles", json=["not", "an", "object"]), 422, "validation_error")
        await error(await http.get("/api/v1/profiles/Not_Valid!"), 422, "validation_error", "path.name")
        missing = await error(await http.get("/api/v1/profiles/nope"), 404, "not_found")
        assert missing["details"]["available"] == [*BUILTIN_NAMES, "team"]

        # PUT replaces (200) or creates (201); the hash follows the values.
        replaced = await http.put("/api/v1/profiles/team", json={"extends": "ci-focused", "max_iterations": 9})
        assert replaced.status_code == 200 and replaced.json()["hash"] != created.json()["hash"]
        child = await http.put("/api/v1/profiles/team-child", json={"extends": "team", "priority": 1})
        assert child.status_code == 201 and child.json()["chain"] == ["team-child", "team", "ci-focused", "default"]
        await error(await http.put("/api/v1/profiles/default", json={}), 409, "conflict")
        cycle = await error(await http.put("/api/v1/profiles/team", json={"extends": "team-child"}), 422,
                            "validation_error", "body.extends")  # fmt: skip
        assert "cycle: team → team-child → team" in cycle["message"]
        await error(
            await http.put("/api/v1/profiles/team", json={"name": "other"}), 422, "validation_error", "body.name"
        )

        # Validate the stored profile, or a candidate without storing it.
        valid = (await http.post("/api/v1/profiles/team-child/validate")).json()
        assert (
            valid["valid"] is True and valid["resolved"]["max_iterations"] == 9 and valid["resolved"]["priority"] == 1
        )
        candidate = (await http.post("/api/v1/profiles/team/validate", json={"max_iterations": 0})).json()
        assert candidate["valid"] is False and candidate["errors"][0]["key"] == "max_iterations"
        assert (await http.get("/api/v1/profiles/team")).json()["document"]["max_iterations"] == 9  # not stored
        await error(await http.post("/api/v1/profiles/nope/validate"), 404, "not_found")

        # A file broken on disk: listing keeps working and says what is wrong, with the line.
        (settings.profiles_dir / "broken.yaml").write_text("max_iterations: 3\nmax_iteration: 4\n")
        listed = {i["name"]: i for i in (await http.get("/api/v1/profiles")).json()["items"]}
        assert "line 2" in listed["broken"]["error"] and listed["team"]["error"] is None
        broken = await error(await http.get("/api/v1/profiles/broken"), 422, "invalid_profile")
        assert broken["details"][0]["line"] == 2
        assert (await http.post("/api/v1/profiles/broken/validate")).json()["valid"] is False

        # Delete: built-ins and profiles others extend are refused.
        await error(await http.delete("/api/v1/profiles/default"), 409, "conflict")
        in_use = await error(await http.delete("/api/v1/profiles/team"), 409, "conflict")
        assert "team-child" in in_use["message"]
        assert (await http.delete("/api/v1/profiles/team-child")).json() == {"name": "team-child", "deleted": True}
        assert (await http.delete("/api/v1/profiles/team")).status_code == 200
        await error(await http.delete("/api/v1/profiles/team"), 404, "not_found")
        assert sorted(p.name for p in settings.profiles_dir.iterdir()) == ["broken.yaml"]  # no temp files left


# -- work orders with a profile, on Temporal ------------------------------------------------------------


def _body(repo, **fields) -> dict:
    return {
        "task_prompt": TASK_PROMPT,
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": DEMO_AGENT},
        **fields,
    }


async def _wait_terminal(http, wo_id: str, timeout: float = 90) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            data = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()
            if data["status"] in ("succeeded", "failed", "canceled"):
                return data
            await asyncio.sleep(0.2)


async def _cli(env: dict, *args: str) -> tuple[int, str, str]:
    """The CLI as a subprocess, awaited so the API served by this event loop keeps answering."""
    proc = await asyncio.create_subprocess_exec(
        *AGENTGATE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, stdout.decode(), stderr.decode()


def _cli_env(http, settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    env.update(AGENTGATE_API_URL=str(http.base_url).rstrip("/"), AGENTGATE_HOME=str(settings.home), COLUMNS="200")
    return env


async def test_work_order_runs_with_the_profile_and_its_overrides(dev_env, settings, sample_repo):
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        # The demo needs two iterations: a profile limited to one fails, an override of that limit passes.
        profile = {"name": "one-shot", "extends": "default", "max_iterations": 1, "gates": [GATE_COMMAND],
                   "max_wall_clock_seconds": 600, "priority": 2}  # fmt: skip
        assert (await http.post("/api/v1/profiles", json=profile)).status_code == 201
        profile_hash = (await http.get("/api/v1/profiles/one-shot", params={"resolve": "true"})).json()["hash"]

        limited = await http.post("/api/v1/work-orders", json=_body(sample_repo, profile="one-shot"))
        override = await http.post("/api/v1/work-orders", json=_body(sample_repo, profile="one-shot", max_iterations=2))
        assert limited.status_code == 201 and override.status_code == 201, (limited.text, override.text)

        # The workflow received fully resolved orders that name their profile and its hash.
        first = await service.original_work_order(dev_env.client, limited.json()["id"])
        second = await service.original_work_order(dev_env.client, override.json()["id"])
        for order in (first, second):
            assert (order.profile, order.profile_hash) == ("one-shot", profile_hash)
            assert [g.command for g in order.gates] == [GATE_COMMAND]
            assert (order.max_wall_clock_seconds, order.priority) == (600, 2)
        assert (first.max_iterations, second.max_iterations) == (1, 2)

        # Unknown profile: 422 naming body.profile and the names there are.
        unknown = await http.post("/api/v1/work-orders", json=_body(sample_repo, profile="nope"))
        assert unknown.status_code == 422, unknown.text
        err = unknown.json()["error"]
        assert err["details"][0]["field"] == "body.profile" and err["message"].startswith("body.profile")
        assert "available: default, ci-focused, rapid-iteration, ralph-style, one-shot" in err["message"]
        clash = await http.post("/api/v1/work-orders", json=_body(sample_repo, profile="one-shot", gates=[],
                                                                    gate_plan_source="profile"))  # fmt: skip
        assert clash.status_code == 422 and clash.json()["error"]["details"][0]["field"] == "body.gates"

        # The CLI: only the flags given override the profile (not typer's defaults).
        env = _cli_env(http, settings)
        code, out, err_text = await _cli(env, "submit", "--path", str(sample_repo), "--prompt", TASK_PROMPT,
                                         "--agent-command", DEMO_AGENT, "--profile", "one-shot",
                                         "--max-wall-clock", "300", "--json")  # fmt: skip
        assert code == 0, err_text
        third = await service.original_work_order(dev_env.client, json.loads(out)["id"])
        assert (third.profile, third.max_iterations, third.priority, third.max_wall_clock_seconds) == (
            "one-shot", 1, 2, 300,
        )  # fmt: skip
        code, _, err_text = await _cli(env, "submit", "--path", str(sample_repo), "--prompt", "x", "--agent-command",
                                       "true", "--profile", "missing")  # fmt: skip
        assert code == 2 and "body.profile" in err_text and "available:" in err_text

        # The runs: the profile's limit stops the first after one iteration; the override lets the second pass.
        limited_final = await _wait_terminal(http, limited.json()["id"])
        override_final = await _wait_terminal(http, override.json()["id"])
        assert (limited_final["status"], limited_final["iterations"]) == ("failed", 1), limited_final
        assert (override_final["result"], override_final["iterations"]) == ("passed", 2), override_final
        await _wait_terminal(http, third.id)


async def test_profiles_cli(settings, tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text("# our CI\nextends: ci-focused\ndescription: team profile\nmax_iterations: 4\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\nmax_iteraions: 4\n")
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text("extends: missing\n")
    async with _api(settings) as http:
        env = _cli_env(http, settings)
        code, out, err = await _cli(env, "profiles", "list", "--json")
        assert code == 0, err
        assert [i["name"] for i in json.loads(out)] == list(BUILTIN_NAMES)

        code, out, err = await _cli(env, "profiles", "create", "team", "--file", str(team), "--json")
        assert code == 0, err
        assert json.loads(out)["chain"] == ["team", "ci-focused", "default"]
        code, out, err = await _cli(env, "profiles", "create", "team", "--file", str(team))
        assert code == 1 and "already exists" in err
        code, out, err = await _cli(env, "profiles", "create", "team", "--file", str(team), "--replace")
        assert code == 0 and "saved profile team" in out, err
        code, out, err = await _cli(env, "profiles", "create", "bad", "--file", str(bad))
        assert code == 2 and f"{bad}, line 2" in err and "max_iteraions" in err, err
        code, out, err = await _cli(env, "profiles", "create", "Bad!", "--file", str(team))
        assert code == 2 and "not a valid profile name" in err

        code, out, err = await _cli(env, "profiles", "show", "team", "--resolve", "--json")
        shown = json.loads(out)
        api_view = (await http.get("/api/v1/profiles/team", params={"resolve": "true"})).json()
        assert code == 0 and shown["hash"] == api_view["hash"] and shown["resolved"]["max_iterations"] == 4
        code, out, err = await _cli(env, "profiles", "show", "team")
        assert code == 0 and "extends: ci-focused" in out and "max_iterations: 4" in out
        code, out, err = await _cli(env, "profiles", "show", "team", "--resolve")
        assert code == 0 and "chain: team → ci-focused → default" in out and api_view["hash"] in out
        code, out, err = await _cli(env, "profiles", "list")
        assert code == 0 and "team profile" in out and "built-in" in out

        code, out, err = await _cli(env, "profiles", "validate", "team")
        assert code == 0 and "profile team is valid" in out
        code, out, err = await _cli(env, "profiles", "validate", "team", "--file", str(dangling))
        assert code == 2 and "'missing', which does not exist" in err
        code, out, err = await _cli(env, "profiles", "validate", "team", "--file", str(dangling), "--json")
        assert code == 2 and json.loads(out)["valid"] is False
        code, out, err = await _cli(env, "profiles", "show", "nope")
        assert code == 2 and "no profile named 'nope'" in err

        code, out, err = await _cli(env, "profiles", "delete", "default")
        assert code == 1 and "built-in" in err
        code, out, err = await _cli(env, "profiles", "delete", "team", "--json")
        assert code == 0 and json.loads(out) == {"name": "team", "deleted": True}
        assert not (settings.profiles_dir / "team.yaml").exists()
