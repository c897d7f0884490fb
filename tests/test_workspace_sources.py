"""Workspace sources in every natural form normalize to the one model; the rest is a 422 listing the forms."""

from __future__ import annotations

import contextlib

import pytest
from pydantic import TypeAdapter, ValidationError
from temporalio.service import RPCError

from agentgate import service
from agentgate.models import FreshSource, GitHubSource, GitSource, LocalSource, WorkOrderRequest, WorkspaceSource
from agentgate.workspace_sources import ACCEPTED_FORMS
from tests.conftest import DEMO_AGENT, running_api, running_worker

SOURCE = TypeAdapter(WorkspaceSource)


def _gh(owner: str, repo: str, branch: str | None = None) -> GitHubSource:
    return GitHubSource(owner=owner, repo=repo, branch=branch)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # GitHub: the shorthand, owner + repo with or without type, and URLs of every kind.
        ({"type": "github", "repo": "octo/widgets"}, _gh("octo", "widgets")),
        ({"type": "github", "repo": "octo/widgets.git", "branch": "dev"}, _gh("octo", "widgets", "dev")),
        ({"owner": "octo", "repo": "widgets"}, _gh("octo", "widgets")),
        ({"type": "github", "owner": "octo", "repo": "widgets"}, _gh("octo", "widgets")),
        ({"repo": "octo/widgets"}, _gh("octo", "widgets")),
        ({"type": "github", "repo": "https://github.com/octo/widgets"}, _gh("octo", "widgets")),
        ({"type": "github", "url": "git@github.com:octo/widgets.git"}, _gh("octo", "widgets")),
        ("https://github.com/octo/widgets", _gh("octo", "widgets")),
        ("https://github.com/octo/widgets.git", _gh("octo", "widgets")),
        ("https://github.com/octo/widgets/", _gh("octo", "widgets")),
        ("http://www.github.com/octo/widgets", _gh("octo", "widgets")),
        ("git@github.com:octo/widgets.git", _gh("octo", "widgets")),
        ("ssh://git@github.com/octo/widgets.git", _gh("octo", "widgets")),
        ("  https://GitHub.com/octo/widgets  ", _gh("octo", "widgets")),
        ({"url": "https://github.com/octo/widgets", "branch": "main"}, _gh("octo", "widgets", "main")),
        # Any other host is a plain git source, URL kept as given.
        ("https://gitlab.example.com/team/app.git", GitSource(url="https://gitlab.example.com/team/app.git")),
        ("https://git.example.com/a/b/c", GitSource(url="https://git.example.com/a/b/c")),
        ("git@gitlab.com:team/app.git", GitSource(url="git@gitlab.com:team/app.git")),
        ("ssh://git@host.example:2222/team/app.git", GitSource(url="ssh://git@host.example:2222/team/app.git")),
        ("file:///srv/git/app.git", GitSource(url="file:///srv/git/app.git")),
        ({"url": "https://gitlab.com/t/app", "branch": "v2"}, GitSource(url="https://gitlab.com/t/app", branch="v2")),
        ({"url": "/srv/git/app.git"}, GitSource(url="/srv/git/app.git")),
        ({"type": "git", "url": "https://host.example/o/r"}, GitSource(url="https://host.example/o/r")),
        # Local paths.
        ("/srv/repos/app", LocalSource(path="/srv/repos/app")),
        ("~/src/app", LocalSource(path="~/src/app")),
        ({"path": "/srv/repos/app"}, LocalSource(path="/srv/repos/app")),
        ({"type": "local", "path": "/srv/repos/app"}, LocalSource(path="/srv/repos/app")),
        # Fresh.
        ({"type": "fresh"}, FreshSource()),
        ({"type": "fresh", "template": "/srv/tpl"}, FreshSource(template="/srv/tpl")),
    ],
)  # fmt: skip
def test_every_natural_form_normalizes_to_the_one_model(given, expected):
    assert SOURCE.validate_python(given) == expected


@pytest.mark.parametrize(
    "model", [_gh("o", "r"), GitSource(url="https://h/o/r"), LocalSource(path="/x"), FreshSource()]
)
def test_canonical_forms_round_trip(model):
    """What the workflow stores in history (model_dump) must validate back to the same model on replay."""
    assert SOURCE.validate_python(model.model_dump(mode="json")) == model
    assert SOURCE.validate_python(model) == model
    assert SOURCE.validate_json(SOURCE.dump_json(model)) == model


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("octo/widgets", "ambiguous"),
        ("widgets", "neither a git URL nor an absolute path"),
        ("", "empty string"),
        ("   ", "empty string"),
        ({}, "empty object"),
        ({"branch": "main"}, "none of `path`, `url`, `repo`"),
        ({"path": "/x", "url": "https://h/o/r"}, "ambiguous"),
        ({"path": "/x", "repo": "o/r"}, "ambiguous"),
        ({"owner": "octo"}, "needs `repo`"),
        ({"repo": "widgets"}, "has no owner"),
        ({"owner": "octo", "repo": "octo/widgets"}, "`owner` is also given"),
        ({"repo": "a/b/c"}, "exactly owner/name"),
        ({"repo": 5}, "must be a string"),
        ({"type": "svn", "url": "svn://x"}, "unknown workspace_source type"),
        ({"type": 3}, "unknown workspace_source type"),
        ("https://github.com/octo", "exactly one repository"),
        ("https://github.com/octo/widgets/tree/main", "exactly one repository"),
        ("https://", "has no host"),
        ("https://host.example", "names no repository"),
        ("https://host.example/a b", "whitespace"),
        ("ftp://host/o/r", "unsupported scheme"),
        ("https://host:notaport/o/r", "malformed"),
        ("file://relative/x", "absolute path"),
        ({"url": "not a url"}, "not a git URL"),
        ({"url": ["x"]}, "must be a string"),
        ({"type": "github", "url": "https://gitlab.com/o/r"}, "not a github.com URL"),
        (["/x"], "must be an object or a string"),
        (None, "must be an object or a string"),
        (42, "must be an object or a string"),
    ],
)  # fmt: skip
def test_ambiguous_or_malformed_sources_list_the_accepted_forms(given, says):
    with pytest.raises(ValidationError) as info:
        SOURCE.validate_python(given)
    message = str(info.value)
    assert says in message
    assert "Accepted forms:" in message and ACCEPTED_FORMS[0] in message


def test_field_problems_of_a_canonical_form_still_name_the_field():
    with pytest.raises(ValidationError) as info:
        SOURCE.validate_python({"owner": "octo", "repo": "widgets", "colour": "blue"})
    assert info.value.errors()[0]["loc"][-1] == "colour"
    with pytest.raises(ValidationError) as info:
        SOURCE.validate_python({"type": "github", "owner": "oc to", "repo": "widgets"})
    assert info.value.errors()[0]["loc"][-1] == "owner"


def test_the_request_model_accepts_the_short_forms():
    request = WorkOrderRequest(
        task_prompt="x", workspace_source="git@github.com:octo/widgets.git", agent={"command": "true"}
    )
    assert request.workspace_source == _gh("octo", "widgets")
    # The OpenAPI input schema documents the string form next to the four models.
    schema = WorkOrderRequest.model_json_schema()["properties"]["workspace_source"]
    assert {"type": "string"} in schema["anyOf"] and "Accepted forms" in schema["description"]


def _body(source) -> dict:
    return {"task_prompt": "normalize me", "workspace_source": source, "agent": {"command": DEMO_AGENT}}


async def test_api_normalizes_every_form_and_names_the_field_on_errors(dev_env, settings, sample_repo, tmp_path):
    """Over real HTTP: what reaches Temporal is the canonical model; a bad form is a 422 at body.workspace_source.

    The accepted orders are read back from their start event in Temporal history, then terminated
    (the worker is there for the queue's admission update that submit makes; the runs need not finish).
    """
    forms = [
        ({"owner": "octo", "repo": "widgets"}, _gh("octo", "widgets")),
        ({"type": "github", "repo": "octo/widgets"}, _gh("octo", "widgets")),
        ("https://github.com/octo/widgets.git", _gh("octo", "widgets")),
        ("git@gitlab.com:team/app.git", GitSource(url="git@gitlab.com:team/app.git")),
        ({"url": "https://gitlab.com/team/app"}, GitSource(url="https://gitlab.com/team/app")),
        (str(sample_repo), LocalSource(path=str(sample_repo))),
        ({"path": str(sample_repo)}, LocalSource(path=str(sample_repo))),
        ({"type": "fresh"}, FreshSource()),
    ]
    started = []
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        try:
            for given, expected in forms:
                response = await http.post("/api/v1/work-orders", json=_body(given))
                assert response.status_code == 201, (given, response.text)
                started.append(response.json()["id"])
                order = await service.original_work_order(dev_env.client, started[-1])
                assert order.workspace_source == expected, given

            for bad in ["octo/widgets", {"owner": "octo"}, {"path": "/x", "url": "https://h/o/r"}, 7, "ftp://h/o/r"]:
                response = await http.post("/api/v1/work-orders", json=_body(bad))
                assert response.status_code == 422, (bad, response.text)
                error = response.json()["error"]
                assert error["code"] == "validation_error"
                assert [d["field"] for d in error["details"]] == ["body.workspace_source"], error
                assert error["message"].startswith("body.workspace_source: ")
                assert "Accepted forms:" in error["message"] and '{"type": "fresh"}' in error["message"]

            # A string path is a local source: the host checks still apply and name the path field.
            missing = await http.post("/api/v1/work-orders", json=_body(str(tmp_path / "nowhere")))
            assert missing.status_code == 422
            assert missing.json()["error"]["details"][0]["field"] == "body.workspace_source.path"
        finally:
            for wo_id in started:  # those that already ended (a clone that failed) need nothing
                with contextlib.suppress(RPCError):
                    await dev_env.client.get_workflow_handle(wo_id).terminate(reason="test cleanup")


@pytest.mark.parametrize("url", ["progress", "../elsewhere", "ftp://h/o/r", "https://", "~/repo"])
def test_an_explicit_git_source_still_needs_a_cloneable_url(url):
    with pytest.raises(ValidationError, match="Accepted forms"):
        SOURCE.validate_python({"type": "git", "url": url})
