"""The artifact store: every byte a run produces, on disk, under one folder per run.

Layout: `<root>/<work-order-id>/<run-id>/` holding `run.json`, `agent-<N>.json`,
`agent-<N>.stdout.log`, `agent-<N>.stderr.log`, `verification-<N>.json`,
`gate-<N>-<k>.log`, `iteration-<N>.json`, `patch-<N>.diff`, `feedback-<N>.md`,
`events.jsonl`. Temporal history only ever carries the *names* of these files
(references relative to the run folder) plus small summaries.

Writes are atomic (temp file + rename in the same folder), so a reader never sees a
half-written JSON file, and a crash leaves either the old or the new version.

Large outputs: the full bytes always go to their own file; JSON records carry a bounded
excerpt, the byte counts and a `truncated` flag (`StoredOutput`). A persistence failure
is logged and counted (here and in `agentgate_persist_failures_total`), never raised into
the run. A record that no longer parses is moved to `<root>/_quarantine/` with a reason
file, so one corrupt file neither breaks listing nor is silently lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentgate.models import RunContext

log = logging.getLogger(__name__)

_SAFE_REF = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
QUARANTINE_DIR = "_quarantine"
DEFAULT_EXCERPT_BYTES = 4000
M = TypeVar("M", bound=BaseModel)


class StoredOutput(BaseModel):
    """How a JSON record refers to a large output: where the full bytes are, and a bounded tail of them."""

    ref: str
    bytes: int
    excerpt: str
    excerpt_bytes: int
    truncated: bool


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
            self.record_failure(ref, exc, ctx)
            return None

    def record_failure(self, ref: str, exc: BaseException, ctx: RunContext | None = None) -> None:
        """Count a failed write here and in Prometheus; the caller carries on."""
        self.persist_failures += 1
        try:
            from agentgate.observability.metrics import PERSIST_FAILURES

            PERSIST_FAILURES.inc()
        except Exception:  # metrics are optional here; counting must never become the failure
            pass
        log.error(
            "artifact write failed: %s: %s",
            ref,
            exc,
            extra={"ref": ref, "error": str(exc), "run_id": ctx.run_id if ctx else None},
        )

    # -- large outputs -------------------------------------------------------------------
    def store_output(
        self, ctx: RunContext, ref: str, data: bytes | str, excerpt_bytes: int = DEFAULT_EXCERPT_BYTES
    ) -> StoredOutput:
        """Write the full bytes to `ref` and describe them for a JSON record (excerpt = the tail)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            self.write_bytes(ctx, ref, raw)
        except OSError as exc:
            self.record_failure(ref, exc, ctx)
        return _describe(ref, raw, len(raw), excerpt_bytes)

    def describe_output(self, ctx: RunContext, ref: str, excerpt_bytes: int = DEFAULT_EXCERPT_BYTES) -> StoredOutput:
        """The same description for a file that was streamed to disk (agent and gate logs) without reading it all."""
        path = self.path(ctx, ref)
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - excerpt_bytes))
                tail = fh.read()
        except FileNotFoundError:
            return _describe(ref, b"", 0, excerpt_bytes)
        return _describe(ref, tail, size, excerpt_bytes)

    # -- corrupt records -----------------------------------------------------------------
    def quarantine(self, path: Path | str, reason: str) -> Path | None:
        """Move a file that cannot be loaded to `<root>/_quarantine/<its path>.<time>` plus a `.reason` file.

        Returns the new location, or None when it could not be moved (logged, counted).
        """
        src = Path(path)
        try:
            rel = src.resolve().relative_to(self.root.resolve())
        except ValueError:
            rel = Path(src.name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.root / QUARANTINE_DIR / rel.parent / f"{rel.name}.{stamp}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            Path(f"{dest}.reason").write_text(f"{src}\n{reason}\n", encoding="utf-8")
        except OSError as exc:
            self.record_failure(str(rel), exc)
            return None
        log.warning("quarantined %s: %s", src, reason)
        return dest

    def load_model(self, ctx: RunContext, ref: str, model: type[M]) -> M | None:
        """Load a record written by this or an older/newer version; quarantine it if it is corrupt.

        Missing new fields take their defaults; fields this version does not know (a newer
        writer) are dropped rather than refused. A missing file is None; a file that is
        not JSON, or no longer fits the model at all, is quarantined and None.
        """
        path = self.path(ctx, ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.quarantine(path, f"not valid JSON: {exc}")
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            unknown = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if unknown and len(unknown) == len(exc.errors()):
                for loc in unknown:
                    _drop(data, loc)
                try:
                    return model.model_validate(data)
                except ValidationError as again:
                    exc = again
            self.quarantine(path, f"does not fit {model.__name__}: {exc}")
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


def _describe(ref: str, tail: bytes, total: int, excerpt_bytes: int) -> StoredOutput:
    cut = tail[-excerpt_bytes:] if excerpt_bytes > 0 else b""
    return StoredOutput(
        ref=ref,
        bytes=total,
        excerpt=cut.decode("utf-8", errors="replace"),
        excerpt_bytes=len(cut),
        truncated=total > len(cut),
    )


def _drop(data: Any, loc: tuple) -> None:
    *parents, last = loc
    for key in parents:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(last, None)


def tail_text(data: bytes | str, limit: int = 4000) -> str:
    """The last `limit` characters of an output, decoded leniently, marked when cut."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if len(text) <= limit:
        return text
    return "…[truncated]…\n" + text[-limit:]
