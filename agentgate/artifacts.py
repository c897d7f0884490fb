"""The artifact store: every byte a run produces, on disk, under one folder per run.

Layout: `<root>/<work-order-id>/<run-id>/` holding `run.json`, `agent-<N>.json`,
`agent-<N>.stdout.log`, `agent-<N>.stderr.log`, `verification-<N>.json`,
`gate-<N>-<k>.log`, `iteration-<N>.json`, `patch-<N>.diff`, `feedback-<N>.md`,
`events.jsonl`. Temporal history only ever carries the *names* of these files
(references relative to the run folder) plus small summaries.

Writes are atomic (temp file + rename in the same folder), so a reader never sees a
half-written JSON file, and a crash leaves either the old or the new version.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentgate.models import RunContext

log = logging.getLogger(__name__)

_SAFE_REF = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class ArtifactError(Exception):
    """A reference that would escape the run folder, or a store that cannot be written."""


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.persist_failures = 0
        self._append_lock = threading.Lock()

    # -- locations -----------------------------------------------------------------
    def run_dir(self, ctx: RunContext) -> Path:
        return self.root / ctx.work_order_id / ctx.run_id

    def work_order_dir(self, work_order_id: str) -> Path:
        return self.root / work_order_id

    def path(self, ctx: RunContext, ref: str) -> Path:
        if not _SAFE_REF.match(ref) or ".." in ref.split("/"):
            raise ArtifactError(f"invalid artifact reference {ref!r}")
        return self.run_dir(ctx) / ref

    # -- writes --------------------------------------------------------------------
    def write_bytes(self, ctx: RunContext, ref: str, data: bytes) -> str:
        target = self.path(ctx, ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ref

    def write_text(self, ctx: RunContext, ref: str, text: str) -> str:
        return self.write_bytes(ctx, ref, text.encode("utf-8"))

    def write_json(self, ctx: RunContext, ref: str, value: BaseModel | dict[str, Any] | list[Any]) -> str:
        if isinstance(value, BaseModel):
            text = value.model_dump_json(indent=2)
        else:
            text = json.dumps(value, indent=2, default=str)
        return self.write_text(ctx, ref, text + "\n")

    def append_jsonl(self, ctx: RunContext, ref: str, record: dict[str, Any]) -> None:
        target = self.path(ctx, ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._append_lock, open(target, "a", encoding="utf-8") as fh:
            fh.write(line)

    def persist_json(self, ctx: RunContext, ref: str, value: BaseModel | dict[str, Any]) -> str | None:
        """Write a record; a storage failure is logged and counted but never fails the run."""
        try:
            return self.write_json(ctx, ref, value)
        except OSError as exc:
            self.persist_failures += 1
            log.error("artifact write failed", extra={"ref": ref, "error": str(exc), "run_id": ctx.run_id})
            return None

    # -- reads ---------------------------------------------------------------------
    def read_bytes(self, ctx: RunContext, ref: str) -> bytes:
        return self.path(ctx, ref).read_bytes()

    def read_text(self, ctx: RunContext, ref: str) -> str:
        return self.path(ctx, ref).read_text(encoding="utf-8", errors="replace")

    def read_json(self, ctx: RunContext, ref: str) -> Any:
        return json.loads(self.read_text(ctx, ref))

    def exists(self, ctx: RunContext, ref: str) -> bool:
        return self.path(ctx, ref).exists()

    def list_runs(self, work_order_id: str) -> list[str]:
        folder = self.work_order_dir(work_order_id)
        if not folder.is_dir():
            return []
        runs = [p for p in folder.iterdir() if p.is_dir()]
        runs.sort(key=lambda p: p.stat().st_mtime)
        return [p.name for p in runs]

    def list_files(self, ctx: RunContext) -> list[str]:
        folder = self.run_dir(ctx)
        if not folder.is_dir():
            return []
        return sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )


def tail_text(data: bytes | str, limit: int = 4000) -> str:
    """The last `limit` characters of an output, decoded leniently, marked when cut."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if len(text) <= limit:
        return text
    return "…[truncated]…\n" + text[-limit:]
