"""Every natural way of naming a workspace source, normalized to the one canonical model.

Callers write `{"type": "github", "repo": "owner/name"}`, `{"owner": "o", "repo": "r"}`,
`"https://github.com/o/r.git"`, `"git@host:o/r.git"`, `"/srv/repo"` or `{"path": ...}`;
the workflow only ever sees `LocalSource | GitSource | GitHubSource | FreshSource`. Doing it
here, before the discriminated union validates, keeps one model (and one code path in the
activities) while the API, CLI and profiles accept whatever a person would type.

Runs inside the workflow sandbox too (a `WorkOrder` is validated when history replays), so it
is pure: string parsing only, no filesystem or network access. Whether a local path exists is
checked by the API at submit time, not here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

ACCEPTED_FORMS = (
    '{"type": "github", "repo": "owner/name"}',
    '{"owner": "o", "repo": "r"} or {"type": "github", "owner": "o", "repo": "r"}',
    'a git URL: "https://host/o/r.git", "git@host:o/r.git" or "ssh://git@host/o/r.git" '
    "(github.com URLs become a github source)",
    '{"url": "<git URL>"} or {"type": "git", "url": "<git URL>"}',
    'an absolute local path "/path/to/repo", {"path": "/path/to/repo"} or {"type": "local", "path": ...}',
    '{"type": "fresh"} for a new empty repository',
)
SOURCE_TYPES = ("local", "git", "github", "fresh")
GITHUB_HOSTS = ("github.com", "www.github.com")

_URL_SCHEMES = ("https", "http", "ssh", "git", "git+ssh", "ssh+git", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# scp-like syntax that git accepts: user@host:path (the user part is required here, so that
# "c:/x" or "label:value" are never mistaken for a repository).
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._~+-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>(?!/)[^\s]+)$")
_GH_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Keys that identify which kind of source a dict without `type` is.
_KIND_KEYS = {"path": "local", "url": "git", "repo": "github", "owner": "github"}


class SourceFormError(ValueError):
    """The value matches no accepted form; the message lists all of them."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}. Accepted forms: " + "; ".join(ACCEPTED_FORMS))


def normalize_workspace_source(value: Any) -> Any:
    """Turn any accepted form into the canonical dict (`type` set); canonical input passes through.

    Raises SourceFormError for anything ambiguous or malformed. Field-level problems of a
    canonical dict (an unknown key, a bad GitHub name) are left to the models, which name the field.
    """
    if hasattr(value, "model_dump"):  # already a source model
        return value
    if isinstance(value, str):
        return _from_string(value)
    if isinstance(value, dict):
        return _from_dict(value)
    raise SourceFormError(f"workspace_source must be an object or a string, not {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from_string(text: str) -> dict[str, Any]:
    text = text.strip()
    if not text:
        raise SourceFormError("workspace_source is an empty string")
    if text.startswith(("/", "~")):
        return {"type": "local", "path": text}
    if _SCHEME.match(text) or _SCP.match(text):
        return _from_url(text)
    if re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", text):
        raise SourceFormError(
            f"{text!r} is ambiguous (a relative path or a GitHub repository?); for GitHub write "
            f'{{"type": "github", "repo": "{text}"}}, for a local repository give its absolute path'
        )
    raise SourceFormError(f"{text!r} is neither a git URL nor an absolute path")


def _from_url(url: str, branch: Any = None) -> dict[str, Any]:
    """A clone URL: github.com ones become a github source (so delivery can open pull requests)."""
    host, path = _host_and_path(url)
    if any(ch.isspace() for ch in url):
        raise SourceFormError(f"git URL {url!r} must not contain whitespace")
    extra = {"branch": branch} if branch is not None else {}
    if host is not None and host.lower() in GITHUB_HOSTS:
        owner, repo = _github_path(url, path)
        return {"type": "github", "owner": owner, "repo": repo, **extra}
    return {"type": "git", "url": url, **extra}


def _host_and_path(url: str) -> tuple[str | None, str]:
    scp = _SCP.match(url)
    if scp:
        return scp["host"], scp["path"]
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise SourceFormError(f"{url!r} is not a git URL")
    if scheme[1].lower() not in _URL_SCHEMES:
        raise SourceFormError(f"git URL {url!r} has an unsupported scheme; use one of: {', '.join(_URL_SCHEMES)}")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise SourceFormError(f"git URL {url!r} is malformed ({exc})") from None
    if scheme[1].lower() == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SourceFormError(f"file URL {url!r} must name an absolute path (file:///path/to/repo)")
        return None, parts.path
    if not hostname:
        raise SourceFormError(f"git URL {url!r} has no host")
    if parts.path.strip("/") == "":
        raise SourceFormError(f"git URL {url!r} names no repository (expected a path such as /owner/repo.git)")
    return hostname, parts.path


def _github_path(url: str, path: str) -> tuple[str, str]:
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) != 2:
        raise SourceFormError(f"GitHub URL {url!r} must name exactly one repository: https://github.com/owner/repo")
    owner, repo = segments[0], segments[1].removesuffix(".git")
    if not (_GH_NAME.match(owner) and _GH_NAME.match(repo)):
        raise SourceFormError(f"GitHub URL {url!r} has an invalid owner or repository name")
    return owner, repo


def _from_dict(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("type")
    if kind is None:
        return _untyped_dict(data)
    if not isinstance(kind, str) or kind not in SOURCE_TYPES:
        raise SourceFormError(f"unknown workspace_source type {kind!r}; types are: {', '.join(SOURCE_TYPES)}")
    if kind == "github":
        return _github_dict(data)
    if kind == "git" and isinstance(data.get("url"), str):
        _check_git_url(data["url"].strip())
    return data  # canonical already; the model checks the fields


def _check_git_url(url: str) -> None:
    """An explicit git source keeps its type, but its URL must still be one git can clone from anywhere:
    a relative path would be resolved against whatever directory the worker happens to run in."""
    if url.startswith("/") or not url:
        return
    _host_and_path(url)
    if any(ch.isspace() for ch in url):
        raise SourceFormError(f"git URL {url!r} must not contain whitespace")


def _untyped_dict(data: dict[str, Any]) -> dict[str, Any]:
    kinds = {_KIND_KEYS[key] for key in data if key in _KIND_KEYS}
    if not kinds:
        raise SourceFormError(
            "workspace_source has no `type` and none of `path`, `url`, `repo` to tell what it is"
            if data
            else "workspace_source is an empty object"
        )
    if len(kinds) > 1:
        keys = ", ".join(sorted(k for k in data if k in _KIND_KEYS))
        raise SourceFormError(f"workspace_source is ambiguous: it has {keys}; give exactly one kind of source")
    (kind,) = kinds
    if kind == "git":
        url = data["url"]
        if not isinstance(url, str):
            raise SourceFormError(f"workspace_source.url must be a string, not {_kind(url)}")
        rest = {k: v for k, v in data.items() if k not in ("url", "branch")}
        if rest:
            return {"type": "git", **data}  # let the model name the unexpected field
        url = url.strip()
        if url.startswith("/"):
            return {"type": "git", **data, "url": url}  # git clones a path too
        return _from_url(url, data.get("branch"))
    if kind == "github":
        return _github_dict({"type": "github", **data})
    return {"type": kind, **data}


def _github_dict(data: dict[str, Any]) -> dict[str, Any]:
    """`repo` may be `owner/name` (or a github.com URL) when `owner` is not given separately."""
    data = dict(data)
    if "url" in data and "repo" not in data and "owner" not in data and isinstance(data["url"], str):
        url = data.pop("url").strip()
        host, path = _host_and_path(url)
        if host is None or host.lower() not in GITHUB_HOSTS:
            raise SourceFormError(f"{url!r} is not a github.com URL; use a git source for other hosts")
        data["owner"], data["repo"] = _github_path(url, path)
        return data
    repo = data.get("repo")
    if "repo" not in data:
        raise SourceFormError('a github source needs `repo` ("owner/name", or `owner` and `repo`)')
    if not isinstance(repo, str):
        raise SourceFormError(f"workspace_source.repo must be a string, not {_kind(repo)}")
    repo = repo.strip()
    if _SCHEME.match(repo) or _SCP.match(repo):
        if "owner" in data:
            raise SourceFormError("give either a repository URL in `repo` or `owner` and `repo`, not both")
        host, path = _host_and_path(repo)
        if host is None or host.lower() not in GITHUB_HOSTS:
            raise SourceFormError(f"{repo!r} is not a github.com URL; use a git source for other hosts")
        data["owner"], data["repo"] = _github_path(repo, path)
        return data
    if "/" in repo:
        if "owner" in data:
            raise SourceFormError(
                f"`repo` is {repo!r} and `owner` is also given; write either "
                '{"repo": "owner/name"} or {"owner": "o", "repo": "name"}'
            )
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise SourceFormError(f"`repo` {repo!r} must be exactly owner/name")
        data["owner"], data["repo"] = owner, name.removesuffix(".git")
        return data
    if "owner" not in data:
        raise SourceFormError(f'`repo` {repo!r} has no owner: write "owner/{repo}" or add `owner`')
    return data
