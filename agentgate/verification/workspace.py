"""Gathers what plan building needs from a workspace: plan files at the base commit, the tree at HEAD."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from agentgate import git
from agentgate.models import GateSpec
from agentgate.verification.diff import read_at
from agentgate.verification.plan import (
    VERIFY_FILES,
    GatePlan,
    GatePlanSource,
    build_plan,
    workflow_files,
)

MARKER_TEXTS = ("pyproject.toml", "package.json")


async def list_tree(workspace: str | Path, commit: str) -> list[str]:
    out = await git.git(workspace, "-c", "core.quotePath=false", "ls-tree", "-r", "--name-only", commit)
    return [p for p in out.splitlines() if p]


async def plan_for_workspace(
    workspace: str | Path,
    *,
    base: str,
    head: str,
    source: GatePlanSource = "auto",
    inline_gates: Sequence[GateSpec] = (),
    skip_levels: Iterable[str] = (),
    protected_paths: Iterable[str] = (),
) -> GatePlan:
    base_files = await list_tree(workspace, base)
    wanted = [p for p in base_files if p in VERIFY_FILES] + workflow_files(base_files)
    base_texts = {}
    for path in wanted:
        text = await read_at(workspace, base, path)
        if text is not None:
            base_texts[path] = text
    head_files = await list_tree(workspace, head)
    head_texts = {}
    for path in MARKER_TEXTS:
        if path in head_files:
            text = await read_at(workspace, head, path)
            if text is not None:
                head_texts[path] = text
    return build_plan(
        source=source,
        inline_gates=inline_gates,
        base_texts=base_texts,
        head_files=head_files,
        head_texts=head_texts,
        skip_levels=skip_levels,
        protected_paths=protected_paths,
    )
