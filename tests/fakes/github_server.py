"""A local fake of the GitHub API: real HTTP on 127.0.0.1, GitHub's response shapes, scriptable CI.

Serves the REST endpoints and the GraphQL mutation AgentGate uses, checks the bearer
token, records every request, and can inject faults (502, 403 secondary rate limit…)
per test. It also serves git smart HTTP for a real bare repository through
`git http-backend`, behind the same token check, so a push authenticates exactly as
against github.com.

Shapes follow docs.github.com (REST API version 2022-11-28): pulls, check-runs list,
combined status, actions runs/jobs, the job-logs 302 to a signed URL, GraphQL errors.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

DOCS = "https://docs.github.com/rest"


# ---------------------------------------------------------------------------
# Scriptable CI
# ---------------------------------------------------------------------------


@dataclass
class FakeJob:
    name: str
    conclusion: str | None = "success"
    status: str = "completed"
    steps: list[tuple[str, str | None]] = field(default_factory=lambda: [("Set up job", "success")])
    log: str = ""


@dataclass
class FakeRun:
    name: str = "CI"
    status: str = "completed"
    conclusion: str | None = "success"
    jobs: list[FakeJob] = field(default_factory=list)
    event: str = "pull_request"


@dataclass
class FakeCheck:
    """A check run from another app (not GitHub Actions)."""

    name: str
    status: str = "completed"
    conclusion: str | None = "success"
    app: str = "external-ci"
    title: str | None = None
    summary: str | None = None
    text: str | None = None


@dataclass
class FakeStatus:
    context: str
    state: str = "success"  # error | failure | pending | success
    description: str | None = None
    target_url: str | None = None


@dataclass
class CI:
    runs: list[FakeRun] = field(default_factory=list)
    checks: list[FakeCheck] = field(default_factory=list)
    statuses: list[FakeStatus] = field(default_factory=list)

    @classmethod
    def green(cls, job: str = "test") -> CI:
        return cls(runs=[FakeRun(jobs=[FakeJob(job, steps=[("Set up job", "success"), ("Run pytest", "success")])])])

    @classmethod
    def pending(cls, job: str = "test") -> CI:
        return cls(
            runs=[
                FakeRun(
                    status="in_progress", conclusion=None, jobs=[FakeJob(job, status="in_progress", conclusion=None)]
                )
            ]
        )

    @classmethod
    def red(cls, log: str, job: str = "test", step: str = "Run pytest") -> CI:
        return cls(
            runs=[
                FakeRun(
                    conclusion="failure",
                    jobs=[
                        FakeJob(
                            job,
                            conclusion="failure",
                            log=log,
                            steps=[("Set up job", "success"), (step, "failure"), ("Complete job", "success")],
                        )
                    ],
                )
            ]
        )

    @classmethod
    def action_required(cls) -> CI:
        """A workflow run from a first-time contributor waiting for a maintainer's approval: no jobs yet."""
        return cls(runs=[FakeRun(status="completed", conclusion="action_required", jobs=[])])

    @classmethod
    def none(cls) -> CI:
        return cls()


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    authorized: bool
    status: int = 0


def github_actions_log(lines: list[str], step: str = "pytest", exit_code: int = 1) -> str:
    """A job log in GitHub's format: timestamped lines, groups, the `##[error]` exit marker."""
    ts = itertools.count()

    def stamp() -> str:
        return f"2024-01-01T00:00:{next(ts) % 60:02d}.{1234567:07d}Z "

    out = [
        "\ufeff" + stamp() + "Requested labels: ubuntu-latest",
        stamp() + "##[group]Operating System",
        stamp() + "Ubuntu 22.04.4 LTS",
        stamp() + "##[endgroup]",
        stamp() + "##[group]Run actions/checkout@v4",
        stamp() + "with:",
        stamp() + "  repository: octo/demo",
        stamp() + "##[endgroup]",
        stamp() + "Syncing repository: octo/demo",
        stamp() + f"##[group]Run {step}",
        stamp() + f"\x1b[36;1m{step}\x1b[0m",
        stamp() + "shell: /usr/bin/bash -e {0}",
        stamp() + "##[endgroup]",
    ]
    out += [stamp() + line for line in lines]
    if exit_code:
        out.append(stamp() + f"##[error]Process completed with exit code {exit_code}.")
    out += [stamp() + "Post job cleanup.", stamp() + "Cleaning up orphan processes"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Server state
# ---------------------------------------------------------------------------


class FakeGitHub:
    def __init__(
        self,
        token: str,
        *,
        owner: str = "octo",
        repo: str = "demo",
        default_branch: str = "trunk",
        bare_repo: Path | None = None,
    ) -> None:
        self.token = token
        self.owner, self.repo = owner, repo
        self.default_branch = default_branch
        self.bare_repo = bare_repo
        self.collaborators: set[str] | None = None  # None: everybody may review
        self.pulls: dict[int, dict[str, Any]] = {}
        self.labels: dict[int, list[str]] = {}
        self.ci: dict[str, list[CI]] = {}  # head sha → states, advanced on each check-runs read
        self._ci_current: dict[str, CI] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.blob_requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1000)
        self._job_ids: dict[tuple[str, int, int], int] = {}
        self._run_ids: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self.base_url = ""
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------
    def script_ci(self, sha: str, *states: CI) -> None:
        """CI states for a commit; each check-runs read moves to the next, the last one stays."""
        with self._lock:
            self.ci[sha] = list(states)
            self._ci_current.pop(sha, None)

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        with self._lock:
            self.faults.append(
                Fault(
                    method.upper(),
                    re.compile(path_regex),
                    status,
                    body if body is not None else {"message": "Server Error"},
                    headers or {},
                    times,
                )
            )

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.search(r.path)]

    @property
    def clone_url(self) -> str:
        return f"{self.base_url}/{self.owner}/{self.repo}.git"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeGitHub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake GitHub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- helpers -------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth in (f"Bearer {self.token}", f"token {self.token}")

    def _node_id(self, kind: str, number: int) -> str:
        return kind + "_kw" + base64.b64encode(f"{self.owner}/{self.repo}#{number}".encode()).decode().rstrip("=")

    def _repo_json(self) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{self.owner}/{self.repo}"
        return {
            "id": 1296269,
            "node_id": "R_kgDOAAAAAQ",
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "owner": {"login": self.owner, "id": 1, "type": "Organization"},
            "private": False,
            "html_url": f"https://github.com/{self.owner}/{self.repo}",
            "url": api,
            "clone_url": self.clone_url,
            "git_url": f"git://github.com/{self.owner}/{self.repo}.git",
            "ssh_url": f"git@github.com:{self.owner}/{self.repo}.git",
            "default_branch": self.default_branch,
            "visibility": "public",
            "permissions": {"admin": False, "push": True, "pull": True},
        }

    def _branch_sha(self, branch: str) -> str | None:
        if self.bare_repo is None:
            return hashlib.sha1(branch.encode()).hexdigest()
        proc = subprocess.run(
            ["git", "-C", str(self.bare_repo), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() or None

    def _pull_json(self, number: int) -> dict[str, Any]:
        pr = self.pulls[number]
        api = f"{self.base_url}/repos/{self.owner}/{self.repo}"
        head_sha = self._branch_sha(pr["head"]) or pr["head_sha"]
        repo = self._repo_json()
        return {
            "url": f"{api}/pulls/{number}",
            "id": 1000000 + number,
            "node_id": pr["node_id"],
            "html_url": f"https://github.com/{self.owner}/{self.repo}/pull/{number}",
            "diff_url": f"https://github.com/{self.owner}/{self.repo}/pull/{number}.diff",
            "issue_url": f"{api}/issues/{number}",
            "number": number,
            "state": pr["state"],
            "locked": False,
            "title": pr["title"],
            "user": {"login": "agentgate-bot", "id": 7, "type": "Bot"},
            "body": pr["body"],
            "labels": [{"name": n} for n in self.labels.get(number, [])],
            "draft": pr["draft"],
            "requested_reviewers": [{"login": r} for r in pr["reviewers"]],
            "assignees": [{"login": a} for a in pr["assignees"]],
            "head": {
                "label": f"{self.owner}:{pr['head']}",
                "ref": pr["head"],
                "sha": head_sha,
                "user": {"login": self.owner},
                "repo": repo,
            },
            "base": {
                "label": f"{self.owner}:{pr['base']}",
                "ref": pr["base"],
                "sha": self._branch_sha(pr["base"]) or "0" * 40,
                "user": {"login": self.owner},
                "repo": repo,
            },
            "merged": False,
            "mergeable_state": "unknown",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }

    def _ci_for(self, sha: str, advance: bool) -> CI:
        with self._lock:
            queue = self.ci.get(sha)
            if not queue:
                return self._ci_current.get(sha, CI.none())
            if advance or sha not in self._ci_current:
                self._ci_current[sha] = queue.pop(0) if len(queue) > 1 else queue[0]
            return self._ci_current[sha]

    def _run_id(self, sha: str, index: int) -> int:
        with self._lock:
            return self._run_ids.setdefault((sha, index), next(self._ids))

    def _job_id(self, sha: str, run_index: int, job_index: int) -> int:
        with self._lock:
            return self._job_ids.setdefault((sha, run_index, job_index), next(self._ids))

    def _jobs_json(self, sha: str, ci: CI) -> list[tuple[int, int, dict[str, Any], FakeJob]]:
        out = []
        api = f"{self.base_url}/repos/{self.owner}/{self.repo}"
        for ri, run in enumerate(ci.runs):
            run_id = self._run_id(sha, ri)
            for ji, job in enumerate(run.jobs):
                jid = self._job_id(sha, ri, ji)
                steps = [
                    {
                        "name": n,
                        "status": "completed" if c else job.status,
                        "conclusion": c,
                        "number": k + 1,
                        "started_at": "2024-01-01T00:00:00Z",
                        "completed_at": "2024-01-01T00:01:00Z" if c else None,
                    }
                    for k, (n, c) in enumerate(job.steps)
                ]
                out.append(
                    (
                        ri,
                        jid,
                        {
                            "id": jid,
                            "run_id": run_id,
                            "run_url": f"{api}/actions/runs/{run_id}",
                            "run_attempt": 1,
                            "node_id": f"CR_kw{jid}",
                            "head_sha": sha,
                            "url": f"{api}/actions/jobs/{jid}",
                            "html_url": f"https://github.com/{self.owner}/{self.repo}/actions/runs/{run_id}/job/{jid}",
                            "status": job.status,
                            "conclusion": job.conclusion,
                            "created_at": "2024-01-01T00:00:00Z",
                            "started_at": "2024-01-01T00:00:00Z",
                            "completed_at": "2024-01-01T00:02:00Z" if job.status == "completed" else None,
                            "name": job.name,
                            "steps": steps,
                            "check_run_url": f"{api}/check-runs/{jid}",
                            "labels": ["ubuntu-latest"],
                            "runner_id": 1,
                            "runner_name": "GitHub Actions 1",
                            "runner_group_id": 2,
                            "runner_group_name": "GitHub Actions",
                            "workflow_name": run.name,
                            "head_branch": "x",
                        },
                        job,
                    )
                )
        return out

    def _check_runs_json(self, sha: str, ci: CI) -> list[dict[str, Any]]:
        api = f"{self.base_url}/repos/{self.owner}/{self.repo}"
        runs = []
        for _, jid, job_json, job in self._jobs_json(sha, ci):
            runs.append(
                {
                    "id": jid,
                    "head_sha": sha,
                    "node_id": f"CR_kw{jid}",
                    "external_id": "",
                    "url": f"{api}/check-runs/{jid}",
                    "html_url": job_json["html_url"],
                    "details_url": job_json["html_url"],
                    "status": job.status,
                    "conclusion": job.conclusion,
                    "started_at": "2024-01-01T00:00:00Z",
                    "completed_at": job_json["completed_at"],
                    "output": {
                        "title": None,
                        "summary": None,
                        "text": None,
                        "annotations_count": 0,
                        "annotations_url": f"{api}/check-runs/{jid}/annotations",
                    },
                    "name": job.name,
                    "check_suite": {"id": 5000 + jid},
                    "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
                    "pull_requests": [],
                }
            )
        for k, check in enumerate(ci.checks):
            cid = self._job_id(sha, 999, k)
            runs.append(
                {
                    "id": cid,
                    "head_sha": sha,
                    "node_id": f"CR_kw{cid}",
                    "external_id": "ext",
                    "url": f"{api}/check-runs/{cid}",
                    "html_url": f"https://ci.example/{cid}",
                    "details_url": f"https://ci.example/{cid}",
                    "status": check.status,
                    "conclusion": check.conclusion,
                    "started_at": "2024-01-01T00:00:00Z",
                    "completed_at": None,
                    "output": {
                        "title": check.title,
                        "summary": check.summary,
                        "text": check.text,
                        "annotations_count": 0,
                        "annotations_url": f"{api}/check-runs/{cid}/annotations",
                    },
                    "name": check.name,
                    "check_suite": {"id": 9000 + k},
                    "app": {"id": 99, "slug": check.app, "name": check.app},
                    "pull_requests": [],
                }
            )
        return runs

    # -- app ---------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:  # noqa: C901 - one route table
        app = FastAPI()
        gh = self
        repo_prefix = "/repos/{owner}/{repo}"

        def err(status: int, message: str, **extra: Any) -> JSONResponse:
            return JSONResponse(
                {"message": message, "documentation_url": DOCS, "status": str(status), **extra}, status_code=status
            )

        @app.middleware("http")
        async def guard(request: Request, call_next):
            body = await request.body()
            path = request.url.path
            parsed: Any = None
            if body and request.headers.get("content-type", "").startswith("application/json"):
                import json

                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
            rec = Recorded(request.method, path, dict(request.query_params), parsed, gh._authorized(request))
            if path.startswith("/_blob/"):
                return await call_next(request)
            gh.requests.append(rec)
            with gh._lock:
                fault = next((f for f in gh.faults if f.method == request.method and f.path.search(path)), None)
                if fault is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        gh.faults.remove(fault)
            if fault is not None:
                rec.status = fault.status
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            if path.endswith(".git") or ".git/" in path:
                response = await call_next(request)
                rec.status = response.status_code
                return response
            if not rec.authorized:
                rec.status = 401
                return err(401, "Bad credentials")
            response = await call_next(request)
            rec.status = response.status_code
            return response

        def check_repo(owner: str, repo: str) -> JSONResponse | None:
            if (owner, repo) != (gh.owner, gh.repo):
                return err(404, "Not Found")
            return None

        @app.get(repo_prefix)
        async def get_repo(owner: str, repo: str):
            return check_repo(owner, repo) or gh._repo_json()

        @app.get(repo_prefix + "/pulls")
        async def list_pulls(owner: str, repo: str, request: Request):
            if (bad := check_repo(owner, repo)) is not None:
                return bad
            head = request.query_params.get("head", "")
            state = request.query_params.get("state", "open")
            out = []
            for number, pr in sorted(gh.pulls.items()):
                if head and f"{gh.owner}:{pr['head']}" != head:
                    continue
                if state != "all" and pr["state"] != state:
                    continue
                out.append(gh._pull_json(number))
            return out

        @app.post(repo_prefix + "/pulls")
        async def create_pull(owner: str, repo: str, request: Request):
            if (bad := check_repo(owner, repo)) is not None:
                return bad
            data = await request.json()
            head, base = data.get("head"), data.get("base")
            if not data.get("title") or not head or not base:
                return err(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "missing_field",
                            "field": "title" if not data.get("title") else "head",
                        }
                    ],
                )
            sha = gh._branch_sha(head)
            if sha is None:
                return err(
                    422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}]
                )
            if gh._branch_sha(base) is None:
                return err(
                    422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "base", "code": "invalid"}]
                )
            for pr in gh.pulls.values():
                if pr["head"] == head and pr["state"] == "open":
                    return err(
                        422,
                        "Validation Failed",
                        errors=[
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": f"A pull request already exists for {gh.owner}:{head}.",
                            }
                        ],
                    )
            number = len(gh.pulls) + 1
            gh.pulls[number] = {
                "title": data["title"],
                "body": data.get("body"),
                "head": head,
                "base": base,
                "draft": bool(data.get("draft", False)),
                "state": "open",
                "head_sha": sha,
                "node_id": gh._node_id("PR", number),
                "reviewers": [],
                "assignees": [],
            }
            return JSONResponse(gh._pull_json(number), status_code=201)

        @app.get(repo_prefix + "/pulls/{number}")
        async def get_pull(owner: str, repo: str, number: int):
            if number not in gh.pulls:
                return err(404, "Not Found")
            return gh._pull_json(number)

        @app.post(repo_prefix + "/issues/{number}/labels")
        async def add_labels(owner: str, repo: str, number: int, request: Request):
            if number not in gh.pulls:
                return err(404, "Not Found")
            data = await request.json()
            labels = gh.labels.setdefault(number, [])
            labels += [lbl for lbl in data.get("labels", []) if lbl not in labels]
            return [
                {"id": 1 + i, "node_id": f"LA_{i}", "name": n, "color": "ededed", "default": False}
                for i, n in enumerate(labels)
            ]

        @app.post(repo_prefix + "/pulls/{number}/requested_reviewers")
        async def request_reviewers(owner: str, repo: str, number: int, request: Request):
            if number not in gh.pulls:
                return err(404, "Not Found")
            data = await request.json()
            wanted = data.get("reviewers", [])
            if gh.collaborators is not None and any(r not in gh.collaborators for r in wanted):
                return err(
                    422,
                    "Reviews may only be requested from collaborators. One or more of the users or "
                    f"teams you specified is not a collaborator of the {gh.owner}/{gh.repo} repository.",
                )
            gh.pulls[number]["reviewers"] += wanted
            return JSONResponse(gh._pull_json(number), status_code=201)

        @app.post(repo_prefix + "/issues/{number}/assignees")
        async def add_assignees(owner: str, repo: str, number: int, request: Request):
            if number not in gh.pulls:
                return err(404, "Not Found")
            data = await request.json()
            gh.pulls[number]["assignees"] += data.get("assignees", [])
            pr = gh._pull_json(number)
            return JSONResponse(
                {
                    "number": number,
                    "title": pr["title"],
                    "assignees": pr["assignees"],
                    "pull_request": {"url": pr["url"]},
                    "state": "open",
                },
                status_code=201,
            )

        @app.get(repo_prefix + "/commits/{ref}/check-runs")
        async def check_runs(owner: str, repo: str, ref: str, request: Request):
            if (bad := check_repo(owner, repo)) is not None:
                return bad
            runs = gh._check_runs_json(ref, gh._ci_for(ref, advance=True))
            per_page = int(request.query_params.get("per_page", 30))
            page = int(request.query_params.get("page", 1))
            chunk = runs[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(runs):
                url = f"{gh.base_url}{request.url.path}?per_page={per_page}&page={page + 1}"
                headers["Link"] = f'<{url}>; rel="next"'
            return JSONResponse({"total_count": len(runs), "check_runs": chunk}, headers=headers)

        @app.get(repo_prefix + "/commits/{ref}/status")
        async def combined_status(owner: str, repo: str, ref: str):
            ci = gh._ci_for(ref, advance=False)
            statuses = [
                {
                    "url": f"{gh.base_url}/repos/{gh.owner}/{gh.repo}/statuses/{ref}",
                    "id": 7000 + i,
                    "node_id": f"SC_{i}",
                    "state": s.state,
                    "description": s.description,
                    "target_url": s.target_url,
                    "context": s.context,
                    "created_at": "2024-01-01T00:00:00Z",
                    "updated_at": "2024-01-01T00:00:00Z",
                }
                for i, s in enumerate(ci.statuses)
            ]
            states = [s.state for s in ci.statuses]
            if any(s in ("error", "failure") for s in states):
                combined = "failure"
            elif not states or "pending" in states:
                combined = "pending"
            else:
                combined = "success"
            return {
                "state": combined,
                "statuses": statuses,
                "sha": ref,
                "total_count": len(statuses),
                "repository": gh._repo_json(),
                "commit_url": f"{gh.base_url}/repos/{gh.owner}/{gh.repo}/commits/{ref}",
                "url": f"{gh.base_url}/repos/{gh.owner}/{gh.repo}/commits/{ref}/status",
            }

        @app.get(repo_prefix + "/actions/runs")
        async def workflow_runs(owner: str, repo: str, request: Request):
            sha = request.query_params.get("head_sha", "")
            ci = gh._ci_for(sha, advance=False)
            api = f"{gh.base_url}/repos/{gh.owner}/{gh.repo}"
            runs = []
            for i, run in enumerate(ci.runs):
                rid = gh._run_id(sha, i)
                runs.append(
                    {
                        "id": rid,
                        "name": run.name,
                        "node_id": f"WFR_{rid}",
                        "head_branch": "x",
                        "head_sha": sha,
                        "path": ".github/workflows/ci.yml",
                        "display_title": "agentgate",
                        "run_number": i + 1,
                        "event": run.event,
                        "status": run.status,
                        "conclusion": run.conclusion,
                        "workflow_id": 42,
                        "url": f"{api}/actions/runs/{rid}",
                        "html_url": f"https://github.com/{gh.owner}/{gh.repo}/actions/runs/{rid}",
                        "jobs_url": f"{api}/actions/runs/{rid}/jobs",
                        "logs_url": f"{api}/actions/runs/{rid}/logs",
                        "run_attempt": 1,
                        "created_at": "2024-01-01T00:00:00Z",
                        "updated_at": "2024-01-01T00:00:00Z",
                    }
                )
            return {"total_count": len(runs), "workflow_runs": runs}

        @app.get(repo_prefix + "/actions/runs/{run_id}/jobs")
        async def run_jobs(owner: str, repo: str, run_id: int):
            for sha in list(gh._ci_current):
                jobs = [j for _, _, j, _ in gh._jobs_json(sha, gh._ci_current[sha]) if j["run_id"] == run_id]
                if jobs:
                    return {"total_count": len(jobs), "jobs": jobs}
            return {"total_count": 0, "jobs": []}

        @app.get(repo_prefix + "/actions/jobs/{job_id}/logs")
        async def job_logs(owner: str, repo: str, job_id: int):
            for sha, ci in list(gh._ci_current.items()):
                for _, jid, _, _job in gh._jobs_json(sha, ci):
                    if jid == job_id:
                        sig = hashlib.sha256(f"{job_id}".encode()).hexdigest()[:16]
                        return Response(
                            status_code=302,
                            headers={"Location": f"{gh.base_url}/_blob/logs/{job_id}?sig={sig}&se=2099-01-01"},
                        )
            return err(404, "Not Found")

        @app.get("/_blob/logs/{job_id}")
        async def blob(job_id: int, request: Request):
            gh.blob_requests.append({"job_id": job_id, "authorization": request.headers.get("authorization")})
            if request.headers.get("authorization"):
                # Signed storage URLs reject any other authentication, like Azure blob storage does.
                return PlainTextResponse("AuthenticationFailed", status_code=400)
            for sha, ci in list(gh._ci_current.items()):
                for _, jid, _, job in gh._jobs_json(sha, ci):
                    if jid == job_id:
                        return PlainTextResponse(job.log)
            return PlainTextResponse("BlobNotFound", status_code=404)

        @app.post("/graphql")
        async def graphql(request: Request):
            data = await request.json()
            query, variables = data.get("query", ""), data.get("variables") or {}
            if "markPullRequestReadyForReview" not in query:
                return {"errors": [{"message": "Unsupported query in fake"}]}
            node = variables.get("id")
            for number, pr in gh.pulls.items():
                if pr["node_id"] == node:
                    pr["draft"] = False
                    return {
                        "data": {
                            "markPullRequestReadyForReview": {
                                "pullRequest": {
                                    "id": node,
                                    "number": number,
                                    "isDraft": False,
                                    "url": f"https://github.com/{gh.owner}/{gh.repo}/pull/{number}",
                                }
                            }
                        }
                    }
            return {
                "data": {"markPullRequestReadyForReview": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["markPullRequestReadyForReview"],
                        "locations": [{"line": 2, "column": 3}],
                        "message": f"Could not resolve to a node with the global id of '{node}'",
                    }
                ],
            }

        @app.api_route("/{owner}/{repo_git}/{rest:path}", methods=["GET", "POST"])
        async def smart_http(owner: str, repo_git: str, rest: str, request: Request):
            expected = "Basic " + base64.b64encode(f"x-access-token:{gh.token}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return Response(
                    "Invalid username or token.", status_code=401, headers={"WWW-Authenticate": 'Basic realm="GitHub"'}
                )
            if gh.bare_repo is None or (owner, repo_git) != (gh.owner, f"{gh.repo}.git"):
                return Response("Repository not found.", status_code=404)
            return await _http_backend(gh.bare_repo, "/" + rest, request)

        return app


async def _http_backend(bare: Path, path_info: str, request: Request) -> Response:
    """Run `git http-backend` as a CGI for one request (git's own smart HTTP server side)."""
    body = await request.body()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(bare.parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{bare.name}{path_info}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": "x-access-token",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(bare.parent),
    }
    if request.headers.get("git-protocol"):
        env["GIT_PROTOCOL"] = request.headers["git-protocol"]
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(body)
    head, _, payload = out.partition(b"\r\n\r\n")
    status, headers = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return Response(payload, status_code=status, headers=headers)
