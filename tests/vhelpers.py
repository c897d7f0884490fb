"""Helpers for the verification tests: real git repositories where an "agent" (the test) edits files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agentgate import git
from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext
from agentgate.verification.diff import DiffData, collect_diff


class Repo:
    def __init__(self, path: Path, files: dict[str, str]) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
        self.write(files)
        self.base = self._commit("base")

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def delete(self, *rels: str) -> None:
        for rel in rels:
            (self.path / rel).unlink()

    def rename(self, old: str, new: str) -> None:
        (self.path / new).parent.mkdir(parents=True, exist_ok=True)
        (self.path / old).rename(self.path / new)

    def _commit(self, message: str) -> str:
        env = git.git_env()
        subprocess.run(["git", "-C", str(self.path), "add", "-A"], check=True, env=env)
        subprocess.run(
            ["git", "-C", str(self.path), "commit", "-q", "--allow-empty", "-m", message], check=True, env=env
        )
        return subprocess.check_output(["git", "-C", str(self.path), "rev-parse", "HEAD"], text=True).strip()

    async def snapshot(self) -> str:
        """What the snapshot activity does: commit everything with agentgate.git."""
        return await git.commit_all(self.path, "agentgate: iteration")

    async def diff(self) -> DiffData:
        head = await self.snapshot()
        return await collect_diff(self.path, self.base, head)


def store_and_ctx(tmp_path: Path) -> tuple[ArtifactStore, RunContext]:
    return ArtifactStore(tmp_path / "runs"), RunContext(work_order_id="wo_testtesttest", run_id="run1")
