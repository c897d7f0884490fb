"""A typed GitHub REST/GraphQL client on httpx, with errors classified for Temporal retries.

Responses are parsed into pydantic models of the fields AgentGate uses (extra fields
ignored), so a changed or unexpected payload fails loudly at the boundary instead of as
a KeyError deep in the CI loop. Every error message is built here, from GitHub's own
`message` field, and passed through `redact` so the token can never leak into an
exception, a Temporal failure or a log line.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agentgate.git import strip_credentials

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_RETRY_AFTER = 900.0  # honour Retry-After, but never park an activity for more than 15 minutes
SECONDARY_LIMIT_DEFAULT_WAIT = 60.0  # GitHub: "wait at least one minute" when no header says otherwise
MAX_PAGES = 10


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

ErrorKind = Literal[
    "github_unavailable",
    "github_rate_limited",
    "github_auth",
    "github_forbidden",
    "github_not_found",
    "github_validation",
    "github_error",
]


class GitHubError(Exception):
    """A failed GitHub call; `retryable` and `retry_after` drive the activity's ApplicationError."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = "github_error",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        github_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.github_message = github_message


def redact(text: str, *secrets: str | None) -> str:
    out = strip_credentials(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _github_message(response: httpx.Response) -> tuple[str, str]:
    """(GitHub's `message`, a compact rendering of its `errors` list) from an error body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip(), ""
    if not isinstance(body, dict):
        return str(body)[:300], ""
    message = str(body.get("message") or "")
    details = []
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            details.append(str(err.get("message") or f"{err.get('field', '?')}: {err.get('code', '?')}"))
        else:
            details.append(str(err))
    return message, "; ".join(details)[:500]


_HINTS = {
    401: "the token is missing, invalid or expired (set AGENTGATE_GITHUB_TOKEN on the worker)",
    403: "the token lacks a permission this call needs (contents, pull_requests, checks/actions: read)",
    404: "the repository or object does not exist, or the token cannot see it",
    422: "GitHub rejected the request as invalid",
}
_KINDS: dict[int, ErrorKind] = {
    401: "github_auth",
    403: "github_forbidden",
    404: "github_not_found",
    422: "github_validation",
}


def classify_response(response: httpx.Response, what: str, token: str | None = None) -> GitHubError:
    """Map an error response to a GitHubError; rate limits and 5xx are retryable with a delay."""
    status = response.status_code
    message, details = _github_message(response)
    headers = response.headers
    retry_after = _parse_retry_after(headers.get("retry-after"))
    text = (
        f"{what}: GitHub answered {status}" + (f": {message}" if message else "") + (f" ({details})" if details else "")
    )
    lowered = message.lower()

    if status == 429 or (status == 403 and ("rate limit" in lowered or retry_after is not None)):
        if retry_after is None and headers.get("x-ratelimit-remaining") == "0":
            reset = headers.get("x-ratelimit-reset")
            if reset and reset.isdigit():
                retry_after = max(1.0, int(reset) - time.time())
        if retry_after is None:
            retry_after = SECONDARY_LIMIT_DEFAULT_WAIT
        return GitHubError(
            redact(text, token),
            kind="github_rate_limited",
            status=status,
            retryable=True,
            retry_after=min(retry_after, MAX_RETRY_AFTER),
            github_message=redact(message, token),
        )
    if status == 403 and headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset")
        wait = max(1.0, int(reset) - time.time()) if reset and reset.isdigit() else SECONDARY_LIMIT_DEFAULT_WAIT
        return GitHubError(
            redact(text, token),
            kind="github_rate_limited",
            status=status,
            retryable=True,
            retry_after=min(wait, MAX_RETRY_AFTER),
            github_message=redact(message, token),
        )
    if status >= 500:
        return GitHubError(
            redact(text, token),
            kind="github_unavailable",
            status=status,
            retryable=True,
            retry_after=min(retry_after, MAX_RETRY_AFTER) if retry_after is not None else None,
            github_message=redact(message, token),
        )
    hint = _HINTS.get(status)
    return GitHubError(
        redact(text + (f" — {hint}" if hint else ""), token),
        kind=_KINDS.get(status, "github_error"),
        status=status,
        retryable=False,
        github_message=redact(message, token),
    )


# ---------------------------------------------------------------------------
# Response models (the fields we use; GitHub's shapes)
# ---------------------------------------------------------------------------


class _GH(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Repository(_GH):
    id: int
    node_id: str
    name: str
    full_name: str
    default_branch: str
    clone_url: str
    html_url: str
    private: bool = False


class GitRef(_GH):
    ref: str
    sha: str
    label: str | None = None


class PullRequest(_GH):
    id: int
    node_id: str
    number: int
    url: str
    html_url: str
    state: str
    draft: bool = False
    title: str = ""
    head: GitRef
    base: GitRef


class CheckRunOutput(_GH):
    title: str | None = None
    summary: str | None = None
    text: str | None = None


class App(_GH):
    slug: str | None = None
    name: str | None = None


class CheckRun(_GH):
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None = None
    html_url: str | None = None
    details_url: str | None = None
    output: CheckRunOutput = Field(default_factory=CheckRunOutput)
    app: App | None = None


class CommitStatus(_GH):
    id: int | None = None
    state: str
    context: str
    description: str | None = None
    target_url: str | None = None


class CombinedStatus(_GH):
    state: str
    sha: str
    total_count: int = 0
    statuses: list[CommitStatus] = Field(default_factory=list)


class WorkflowRun(_GH):
    id: int
    name: str | None = None
    head_sha: str
    status: str | None = None
    conclusion: str | None = None
    html_url: str | None = None
    run_attempt: int | None = None
    event: str | None = None


class JobStep(_GH):
    name: str
    status: str
    conclusion: str | None = None
    number: int


class Job(_GH):
    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None = None
    html_url: str | None = None
    workflow_name: str | None = None
    steps: list[JobStep] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------


def graphql_url(api_url: str) -> str:
    """api.github.com/graphql, or /api/graphql on GitHub Enterprise Server (REST at /api/v3)."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"


MARK_READY_MUTATION = """
mutation MarkReady($id: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $id}) {
    pullRequest { id number isDraft url }
  }
}
""".strip()


class GitHubClient:
    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, *, timeout: float = 30.0) -> None:
        if not token:
            raise GitHubError(
                "no GitHub token: set AGENTGATE_GITHUB_TOKEN (or GITHUB_TOKEN) in the worker's environment",
                kind="github_auth",
            )
        self._token = token
        self.api_url = api_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=timeout,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "agentgate",
            },
        )
        # Log downloads redirect to a pre-signed storage URL that must not receive the token.
        self._anon = httpx.AsyncClient(timeout=timeout, follow_redirects=True, headers={"User-Agent": "agentgate"})

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self.api_url!r})"

    async def __aenter__(self) -> GitHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._anon.aclose()

    # -- transport -------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise GitHubError(
                redact(
                    f"{what}: could not reach the GitHub API at {self.api_url}: {type(exc).__name__}: {exc}",
                    self._token,
                ),
                kind="github_unavailable",
                retryable=True,
            ) from None
        if response.status_code not in ok:
            raise classify_response(response, what, self._token)
        return response

    async def _json(self, method: str, path: str, what: str, **kw: Any) -> Any:
        response = await self._request(method, path, what, **kw)
        try:
            return response.json()
        except ValueError:
            raise GitHubError(
                f"{what}: GitHub answered with invalid JSON", kind="github_unavailable", retryable=True
            ) from None

    async def _paginate(self, path: str, what: str, key: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Follow `Link: rel="next"` (absolute URLs from the server) up to MAX_PAGES pages."""
        items: list[Any] = []
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        for _ in range(MAX_PAGES):
            assert url is not None
            response = await self._request("GET", url, what, params=query)
            body = response.json()
            items.extend(body.get(key, []) if isinstance(body, dict) else body)
            nxt = response.links.get("next", {}).get("url")
            if not nxt:
                break
            url, query = nxt, None
        return items

    @staticmethod
    def _repo_path(owner: str, repo: str) -> str:
        return f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"

    # -- repositories and pull requests ----------------------------------------------
    async def get_repo(self, owner: str, repo: str) -> Repository:
        data = await self._json("GET", self._repo_path(owner, repo), f"get repository {owner}/{repo}")
        return Repository.model_validate(data)

    async def create_pull(
        self, owner: str, repo: str, *, title: str, head: str, base: str, body: str, draft: bool
    ) -> PullRequest:
        data = await self._json(
            "POST",
            f"{self._repo_path(owner, repo)}/pulls",
            f"create pull request {owner}/{repo} {head} → {base}",
            json={"title": title, "head": head, "base": base, "body": body, "draft": draft},
            ok=(201,),
        )
        return PullRequest.model_validate(data)

    async def find_open_pull(self, owner: str, repo: str, head_branch: str) -> PullRequest | None:
        data = await self._json(
            "GET",
            f"{self._repo_path(owner, repo)}/pulls",
            f"list pull requests for {head_branch}",
            params={"head": f"{owner}:{head_branch}", "state": "open", "per_page": 10},
        )
        return PullRequest.model_validate(data[0]) if data else None

    async def get_pull(self, owner: str, repo: str, number: int) -> PullRequest:
        data = await self._json("GET", f"{self._repo_path(owner, repo)}/pulls/{number}", f"get pull request #{number}")
        return PullRequest.model_validate(data)

    async def add_labels(self, owner: str, repo: str, number: int, labels: list[str]) -> None:
        await self._request(
            "POST",
            f"{self._repo_path(owner, repo)}/issues/{number}/labels",
            f"add labels to #{number}",
            json={"labels": labels},
        )

    async def request_reviewers(
        self, owner: str, repo: str, number: int, reviewers: list[str], team_reviewers: list[str]
    ) -> None:
        await self._request(
            "POST",
            f"{self._repo_path(owner, repo)}/pulls/{number}/requested_reviewers",
            f"request reviewers on #{number}",
            json={"reviewers": reviewers, "team_reviewers": team_reviewers},
            ok=(201,),
        )

    async def add_assignees(self, owner: str, repo: str, number: int, assignees: list[str]) -> None:
        await self._request(
            "POST",
            f"{self._repo_path(owner, repo)}/issues/{number}/assignees",
            f"add assignees to #{number}",
            json={"assignees": assignees},
            ok=(201,),
        )

    # -- CI ------------------------------------------------------------------------------
    async def list_check_runs(self, owner: str, repo: str, ref: str) -> list[CheckRun]:
        items = await self._paginate(
            f"{self._repo_path(owner, repo)}/commits/{quote(ref, safe='')}/check-runs",
            f"list check runs for {ref[:12]}",
            "check_runs",
            params={"filter": "latest"},
        )
        return [CheckRun.model_validate(i) for i in items]

    async def combined_status(self, owner: str, repo: str, ref: str) -> CombinedStatus:
        data = await self._json(
            "GET",
            f"{self._repo_path(owner, repo)}/commits/{quote(ref, safe='')}/status",
            f"get combined status for {ref[:12]}",
            params={"per_page": 100},
        )
        return CombinedStatus.model_validate(data)

    async def list_workflow_runs(self, owner: str, repo: str, head_sha: str) -> list[WorkflowRun]:
        items = await self._paginate(
            f"{self._repo_path(owner, repo)}/actions/runs",
            f"list workflow runs for {head_sha[:12]}",
            "workflow_runs",
            params={"head_sha": head_sha},
        )
        return [WorkflowRun.model_validate(i) for i in items]

    async def list_jobs(self, owner: str, repo: str, run_id: int) -> list[Job]:
        items = await self._paginate(
            f"{self._repo_path(owner, repo)}/actions/runs/{run_id}/jobs",
            f"list jobs of workflow run {run_id}",
            "jobs",
            params={"filter": "latest"},
        )
        return [Job.model_validate(i) for i in items]

    async def download_job_log(self, owner: str, repo: str, job_id: int, max_bytes: int) -> tuple[bytes, bool]:
        """(the log's last `max_bytes`, whether it was cut). GitHub answers 302 to a signed URL."""
        what = f"download log of job {job_id}"
        response = await self._request(
            "GET", f"{self._repo_path(owner, repo)}/actions/jobs/{job_id}/logs", what, ok=(200, 302)
        )
        if response.status_code == 200:
            data = response.content
            return data[-max_bytes:], len(data) > max_bytes
        location = response.headers.get("location")
        if not location:
            raise GitHubError(f"{what}: redirect without a Location", kind="github_error")
        tail = bytearray()
        cut = False
        try:
            async with self._anon.stream("GET", location) as stream:
                if stream.status_code != 200:
                    await stream.aread()
                    raise classify_response(stream, what, self._token)
                async for chunk in stream.aiter_bytes():
                    tail += chunk
                    if len(tail) > max_bytes:
                        del tail[: len(tail) - max_bytes]
                        cut = True
        except httpx.TransportError as exc:
            # The signed URL carries a short-lived signature: keep it out of the message.
            raise GitHubError(
                f"{what}: log storage unreachable: {type(exc).__name__}", kind="github_unavailable", retryable=True
            ) from None
        return bytes(tail), cut

    # -- GraphQL -------------------------------------------------------------------------
    async def graphql(self, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        body = await self._json("POST", graphql_url(self.api_url), what, json={"query": query, "variables": variables})
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
            kind_map: dict[str, ErrorKind] = {
                "NOT_FOUND": "github_not_found",
                "FORBIDDEN": "github_forbidden",
                "RATE_LIMITED": "github_rate_limited",
                "UNPROCESSABLE": "github_validation",
            }
            gtype = str(first.get("type") or "")
            kind = kind_map.get(gtype, "github_error")
            message = str(first.get("message") or "GraphQL error")
            return_retry = kind == "github_rate_limited"
            raise GitHubError(
                redact(f"{what}: GitHub GraphQL error{f' {gtype}' if gtype else ''}: {message}", self._token),
                kind=kind,
                retryable=return_retry,
                retry_after=SECONDARY_LIMIT_DEFAULT_WAIT if return_retry else None,
                github_message=redact(message, self._token),
            )
        return body.get("data") or {}

    async def mark_ready_for_review(self, node_id: str) -> bool:
        """Returns the PR's isDraft after the mutation (False when it worked)."""
        data = await self.graphql(MARK_READY_MUTATION, {"id": node_id}, f"mark pull request {node_id} ready")
        pr = (data.get("markPullRequestReadyForReview") or {}).get("pullRequest") or {}
        return bool(pr.get("isDraft", False))
