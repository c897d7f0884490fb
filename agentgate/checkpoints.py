"""Durable checkpoints: every iteration's commit, kept outside the worker that made it.

A workspace lives on one worker's disk. So that losing that worker loses no completed
iteration, the base commit and each iteration's snapshot are also copied into a bare
repository in the artifact store — the storage every worker and the API share (a shared
volume on multi-host deployments):

    <artifact root>/_checkpoints/<work-order-id>.git
        refs/agentgate/<run-id>/base       the commit iteration 1 builds on
        refs/agentgate/<run-id>/iter-<n>   iteration n's snapshot

One repository per work order, so a re-run or a rewind shares the objects of earlier runs
and each copy is incremental (a local `git fetch` of the new commits only). The copy is
made by the bare repository fetching from the workspace rather than the workspace pushing:
the workspace's `.git/config` is writable by the agent (e.g. `url.<x>.insteadOf`), the
bare repository's is not. A checkpoint is read back by fetching its ref into a new
repository (`materialize`), on any worker.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentgate import git

CHECKPOINTS_DIR = "_checkpoints"
_REF = re.compile(r"^refs/agentgate/(?P<run>[A-Za-z0-9._-]+)/(?P<name>base|iter-(?P<n>[0-9]+))$")


class CheckpointError(Exception):
    """A checkpoint could not be written or read back (the message says which and why)."""


def repository(runs_dir: Path, work_order_id: str) -> Path:
    """The bare repository holding every checkpoint of one work order."""
    return Path(runs_dir) / CHECKPOINTS_DIR / f"{work_order_id}.git"


def base_ref(run_id: str) -> str:
    return f"refs/agentgate/{run_id}/base"


def iteration_ref(run_id: str, iteration: int) -> str:
    return f"refs/agentgate/{run_id}/iter-{iteration}"


def parse_ref(ref: str) -> tuple[str, int | None] | None:
    """(run id, iteration) of a checkpoint ref; iteration None for the base; None if it is not one."""
    match = _REF.match(ref)
    if match is None:
        return None
    return match["run"], int(match["n"]) if match["n"] else None


async def _ensure_repository(repo: Path) -> None:
    if (repo / "HEAD").is_file():
        return
    repo.parent.mkdir(parents=True, exist_ok=True)
    # `init` of an existing repository is harmless, so two runs racing here cannot break it.
    await git.git(repo.parent, "init", "-q", "--bare", str(repo))
    # Objects a checkpoint ref points to must never be collected, and nothing here is ever rewritten.
    await git.git(repo, "config", "gc.auto", "0")


async def save(runs_dir: Path, work_order_id: str, workspace: str | Path, ref: str, commit: str) -> str:
    """Copy `commit` (the workspace's HEAD) into the work order's checkpoint repository as `ref`."""
    repo = repository(runs_dir, work_order_id)
    try:
        await _ensure_repository(repo)
        # Fetch HEAD, not a branch: the agent may have switched branches; the snapshot committed on HEAD.
        await git.git(repo, "fetch", "-q", "--no-tags", str(Path(workspace).resolve()), f"+HEAD:{ref}", timeout=1800)
        stored = (await git.git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")).strip()
    except git.GitError as exc:
        raise CheckpointError(f"could not save checkpoint {ref} in {repo}: {exc}") from exc
    if stored != commit:
        raise CheckpointError(
            f"checkpoint {ref} in {repo} is {stored[:12]}, expected {commit[:12]}: the workspace HEAD moved"
        )
    return ref


async def resolve(runs_dir: Path, work_order_id: str, ref: str) -> str | None:
    """The commit a checkpoint ref points to, or None when there is no such checkpoint."""
    repo = repository(runs_dir, work_order_id)
    if not (repo / "HEAD").is_file():
        return None
    out = await git.git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return out.strip() or None


async def list_iterations(runs_dir: Path, work_order_id: str, run_id: str) -> dict[int, str]:
    """{iteration: commit} of every iteration checkpoint of one run (empty when it has none)."""
    repo = repository(runs_dir, work_order_id)
    if not (repo / "HEAD").is_file():
        return {}
    out = await git.git(repo, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/agentgate/{run_id}/")
    found: dict[int, str] = {}
    for line in out.splitlines():
        name, _, commit = line.partition(" ")
        parsed = parse_ref(name)
        if parsed is not None and parsed[1] is not None:
            found[parsed[1]] = commit
    return dict(sorted(found.items()))


async def materialize(runs_dir: Path, work_order_id: str, ref: str, commit: str, dest: Path, branch: str) -> None:
    """Make `dest` a repository whose `branch` is checked out at the checkpoint (`dest` may already be a clone)."""
    repo = repository(runs_dir, work_order_id)
    if not (repo / "HEAD").is_file():
        raise CheckpointError(f"no checkpoint repository for {work_order_id} at {repo}")
    try:
        if not (dest / ".git").exists():
            dest.mkdir(parents=True, exist_ok=True)
            await git.git(dest, "init", "-q")
        await git.git(dest, "fetch", "-q", "--no-tags", str(repo), ref, timeout=1800)
        fetched = (await git.git(dest, "rev-parse", "FETCH_HEAD^{commit}")).strip()
        if fetched != commit:
            raise CheckpointError(f"checkpoint {ref} is {fetched[:12]}, expected {commit[:12]}")
        await git.git(dest, "checkout", "-q", "-f", "-B", branch, commit)
    except git.GitError as exc:
        raise CheckpointError(f"could not restore checkpoint {ref} from {repo}: {exc}") from exc
