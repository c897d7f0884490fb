"""The artifact store: every byte a run produces, on disk, under one folder per run.

Layout: `<root>/<work-order-id>/<run-id>/` holding `run.json`, `agent-<N>.json`,
`agent-<N>.stdout.log`, `agent-<N>.stderr.log`, `verification-<N>.json`,
`gate-<N>-<k>.log`, `iteration-<N>.json`, `patch-<N>.diff`, `feedback-<N>.md`,
`events.jsonl`. Temporal history only ever carries the *names* of these files
(references relative to the run folder) plus small summaries.

Writes are atomic (temp file + rename in the same folder), so a reader never sees a
half-written JSON file, and a crash leaves either the old or the new version.

Secrets never reach disk: every write here (atomic files, JSON records, appended lines and
the streams `agentgate.process` pumps agent and gate output into) passes through the run's
redactor (`agentgate.sandbox.redact`): token formats, the values of the worker's
secret-named variables, and those of the variables the run's work order declares
(`sandbox.secrets`, secret-named `agent.options.env_passthrough`). Two exceptions: binary
data (a NUL byte in its first 8 KB, e.g. a git bundle), and the caller's own input that the
run works from (`work-order.json`, `prompt-<N>.md`), which must stay verbatim or the run
would change; everything the run *produces* is redacted.

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
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentgate.models import RunContext
from agentgate.sandbox.redact import SECRET_NAME, ChunkRedactor, Redactor, secret_env_values

log = logging.getLogger(__name__)

_SAFE_REF = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
QUARANTINE_DIR = "_quarantine"
DEFAULT_EXCERPT_BYTES = 4000
WORK_ORDER_FILE = "work-order.json"
# The submitted input, read back by later phases and by the agent: written exactly as given.
_VERBATIM_REF = re.compile(r"^(work-order\.json|prompt-\d+\.md)$")
_BINARY_SNIFF = 8192
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


# -- redaction ----------------------------------------------------------------------------------------


def declared_secret_names(order: dict[str, Any]) -> list[str]:
    """The variables a work order (as stored in work-order.json) declares secret, by name only."""
    names: list[str] = []
    sandbox = order.get("sandbox")
    if isinstance(sandbox, dict):
        names += [str(n) for n in sandbox.get("secrets") or [] if n]
    agent = order.get("agent")
    options = agent.get("options") if isinstance(agent, dict) else None
    passthrough = (options.get("env_passthrough") if isinstance(options, dict) else None) or []
    if isinstance(passthrough, str):
        passthrough = passthrough.replace(",", " ").split()
    # Passed-through variables are secrets when named like one; NODE_ENV=production must not blank every log.
    names += [str(n) for n in passthrough if n and SECRET_NAME.search(str(n))]
    return names


class _Redactors:
    """The redactor of each run folder, cheap to ask for on every write.

    A run's declared names are read once from its work-order.json (again only when that
    file changes); the values are looked up in the worker's environment on each call (a
    scan of a few dozen variables), so a variable set later is honoured too. Redactors are
    shared between runs whose secret values are the same, which is the usual case.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: OrderedDict[str, tuple[int, tuple[str, ...]]] = OrderedDict()
        self._redactors: OrderedDict[tuple[str, ...], Redactor] = OrderedDict()
        # Runs whose work-order.json could not be written to their folder (a full store): names kept here.
        self._pinned: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def pin(self, run_dir: Path, order_json: str) -> None:
        try:
            order = json.loads(order_json)
            names = tuple(declared_secret_names(order if isinstance(order, dict) else {}))
        except (ValueError, AttributeError, TypeError):
            names = ()
        with self._lock:
            self._pinned[str(run_dir)] = names
            self._pinned.move_to_end(str(run_dir))
            while len(self._pinned) > 256:
                self._pinned.popitem(last=False)

    def pinned(self, run_dir: Path) -> tuple[str, ...] | None:
        with self._lock:
            return self._pinned.get(str(run_dir))

    def names(self, run_dir: Path) -> tuple[str, ...]:
        path = run_dir / WORK_ORDER_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return self.pinned(run_dir) or ()
        key = str(path)
        with self._lock:
            cached = self._names.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            order = json.loads(path.read_text(encoding="utf-8"))
            names = tuple(declared_secret_names(order if isinstance(order, dict) else {}))
        except (OSError, ValueError, AttributeError, TypeError):
            names = ()
        with self._lock:
            self._names[key] = (mtime, names)
            self._names.move_to_end(key)
            while len(self._names) > 256:
                self._names.popitem(last=False)
        return names

    def for_dir(self, run_dir: Path | None) -> Redactor:
        declared = self.names(run_dir) if run_dir is not None else ()
        values = tuple(sorted(set(secret_env_values(declared))))
        with self._lock:
            redactor = self._redactors.get(values)
            if redactor is not None:
                self._redactors.move_to_end(values)
                return redactor
        redactor = Redactor(values)
        with self._lock:
            self._redactors[values] = redactor
            while len(self._redactors) > 32:
                self._redactors.popitem(last=False)
        return redactor


_REDACTORS = _Redactors()


def redactor_for_path(path: Path | str) -> Redactor:
    """The redactor for a file: its run folder's when it lies in one (`<run>/x` or `<run>/sub/x`), else the worker's."""
    path = Path(path)
    for folder in (path.parent, path.parent.parent):
        if (folder / WORK_ORDER_FILE).exists() or _REDACTORS.pinned(folder) is not None:
            return _REDACTORS.for_dir(folder)
    return _REDACTORS.for_dir(None)


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF]


class ArtifactStream:
    """An append-only file whose bytes are redacted a whole line at a time on their way to disk.

    Bytes after the last newline wait in memory until their line is complete (or `close`),
    so a secret split across two writes is still caught. Used by `agentgate.process` for
    the agent's and the gates' output: the one streaming write path into a run folder.

    A full disk (or any write error) never reaches the caller, whose process must keep running:
    the first failure is logged and counted (`agentgate_persist_failures_total`), the rest of
    the output is dropped, and `dropped_bytes` says how much was not kept.
    """

    def __init__(self, path: Path | str, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._redact = ChunkRedactor(redactor or redactor_for_path(self.path))
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed by close()/__exit__
        self.failed: OSError | None = None
        self.dropped_bytes = 0

    def _fail(self, exc: OSError, lost: int) -> None:
        if self.failed is None:
            self.failed = exc
            count_persist_failure(self.path.name, exc, self.path.parent.name)
        self.dropped_bytes += lost

    def write(self, data: bytes) -> int:
        self._put(self._redact.feed(data))
        return len(data)

    def _put(self, out: bytes) -> None:
        """Write bytes that are already redacted (never feed them back into the redactor: it holds partial lines)."""
        if out and self.failed is None:
            try:
                self._fh.write(out)
            except OSError as exc:
                self._fail(exc, len(out))
        elif out:
            self.dropped_bytes += len(out)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._fh.flush()
            except OSError as exc:
                self._fail(exc, 0)

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._put(self._redact.flush())
        finally:
            try:
                self._fh.close()
            except OSError as exc:  # the buffered tail could not be written either
                self._fail(exc, 0)
        if self.dropped_bytes:
            log.error("%s: %d bytes of output were not kept (%s)", self.path, self.dropped_bytes, self.failed)

    def __enter__(self) -> ArtifactStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_persist_failure(ref: str, exc: BaseException, run_id: str | None = None) -> None:
    """Log a failed write and count it in Prometheus; the caller carries on."""
    try:
        from agentgate.observability.metrics import PERSIST_FAILURES

        PERSIST_FAILURES.inc()
    except Exception:  # metrics are optional here; counting must never become the failure
        pass
    log.error("artifact write failed: %s: %s", ref, exc, extra={"ref": ref, "error": str(exc), "run_id": run_id})


def open_artifact_stream(path: Path | str) -> ArtifactStream:
    """Open `path` for appending through the redactor of the run folder it belongs to."""
    return ArtifactStream(path)


def default_spill_dirs() -> list[Path]:
    """Where a file a later phase reads back goes when the store cannot take it: the system's temp folder."""
    return [Path(tempfile.gettempdir()) / f"agentgate-spill-{os.getuid()}"]


class ArtifactStore:
    def __init__(self, root: Path, spill_dirs: list[Path] | None = None) -> None:
        self.root = Path(root)
        self.persist_failures = 0
        self._append_lock = threading.Lock()
        # Second homes (tried in order) for the few files the run reads back: see `keep_text`.
        self.spill_dirs = list(spill_dirs) if spill_dirs is not None else default_spill_dirs()

    # -- redaction -----------------------------------------------------------------
    def redactor(self, ctx: RunContext | None = None) -> Redactor:
        """The redactor every write into `ctx`'s folder goes through (the worker's alone without a ctx)."""
        return _REDACTORS.for_dir(self.run_dir(ctx) if ctx is not None else None)

    def redact_bytes(self, ctx: RunContext | None, data: bytes) -> bytes:
        if not data or _is_binary(data):
            return data
        return self.redactor(ctx).redact_bytes(data)

    def redact_text(self, ctx: RunContext | None, text: str) -> str:
        return self.redactor(ctx).redact(text) if text else text

    def redact_obj(self, ctx: RunContext | None, value: Any) -> Any:
        """JSON-like data (dicts, lists, strings) with every string redacted, e.g. an activity's result."""
        return self.redactor(ctx).redact_obj(value)

    def open_stream(self, ctx: RunContext, ref: str) -> ArtifactStream:
        """Append to `ref` line by line through the run's redactor (close it, or use it as a context manager)."""
        return ArtifactStream(self.path(ctx, ref), self.redactor(ctx))

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
        if not _VERBATIM_REF.match(ref):
            data = self.redact_bytes(ctx, data)
        _write_atomically(target, data)
        return ref

    # -- files the run reads back ------------------------------------------------------
    def spill_path(self, base: Path, ctx: RunContext, ref: str) -> Path:
        self.path(ctx, ref)  # the same validation of the reference
        return base / ctx.work_order_id / ctx.run_id / ref

    def keep_text(self, ctx: RunContext, ref: str, text: str) -> Path | None:
        """Write a file that a later phase or the agent reads back (work order, prompt, feedback).

        Into the run folder when the store takes it; otherwise the failure is counted like any
        other (`agentgate_persist_failures_total`) and the content goes to the first spill folder
        that takes it (`spill_dirs`: the worker's AGENTGATE_HOME/spill, then the system's temp
        folder), so the run goes on. Returns where the content is (`locate` finds it again), or
        None when no place could take it.
        """
        try:
            self.write_text(ctx, ref, text)
            return self.path(ctx, ref)
        except OSError as exc:
            self.record_failure(ref, exc, ctx)
        if ref == WORK_ORDER_FILE:  # its declared secrets must still be redacted from what the run writes
            _REDACTORS.pin(self.run_dir(ctx), text)
        data = text.encode("utf-8")
        if not _VERBATIM_REF.match(ref):
            data = self.redact_bytes(ctx, data)
        for base in self.spill_dirs:
            target = self.spill_path(base, ctx, ref)
            try:
                base.mkdir(parents=True, exist_ok=True, mode=0o700)  # the temp folder is shared: ours alone
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(target, data)
            except OSError as exc:
                log.error("%s: cannot keep it in %s either: %s", ref, base, exc)
                continue
            log.warning("%s of run %s kept in %s: the artifact store cannot take it", ref, ctx.run_id, target)
            return target
        return None

    def locate(self, ctx: RunContext, ref: str) -> Path | None:
        """Where the content of `ref` is: the run folder, else a spill folder (`keep_text`); None when nowhere."""
        for path in (self.path(ctx, ref), *(self.spill_path(base, ctx, ref) for base in self.spill_dirs)):
            if path.is_file():
                return path
        return None

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
        line = self.redact_text(ctx, json.dumps(record, default=str, separators=(",", ":"))) + "\n"
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
        count_persist_failure(ref, exc, ctx.run_id if ctx else None)

    # -- large outputs -------------------------------------------------------------------
    def store_output(
        self, ctx: RunContext, ref: str, data: bytes | str, excerpt_bytes: int = DEFAULT_EXCERPT_BYTES
    ) -> StoredOutput:
        """Write the full bytes to `ref` and describe them for a JSON record (excerpt = the tail)."""
        raw = self.redact_bytes(ctx, data.encode("utf-8") if isinstance(data, str) else data)
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
            # A validation error quotes the record's values: the reason goes through the redactor too.
            Path(f"{dest}.reason").write_text(self.redact_text(None, f"{src}\n{reason}\n"), encoding="utf-8")
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


def _write_atomically(target: Path, data: bytes) -> None:
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
