"""Start-up validation of the artifact store: a corrupt JSON record is quarantined, never fatal.

Every JSON record of a run (`run.json`, `work-order.json`, `agent-N.json`,
`verification-N.json`, `iteration-N.json`, reports) is written atomically, so a corrupt
one means something outside AgentGate went wrong: a disk that filled up under another
writer, a manual edit, a restore from a broken backup. Left in place, such a file makes
every later reader pay for it (and may hide a run from a page that lists the folder).
So the API and the worker check the store when they start: a file that does not parse is
moved to `<store>/_quarantine/…` (the same place `ArtifactStore.load_model` uses) with a
`.reason` file saying what was wrong, where in the file, and when — and the service carries
on. The check runs in a thread (`asyncio.to_thread`), never blocks start-up, never fails it.

A run's `events.jsonl` is judged line by line, the way its readers judge it (`parse_event`):
one bad line must not cost the others, and the file is the channel of live streams (SSE,
WebSocket, `agentgate follow`) and of their `Last-Event-ID` resume. So a file with lines
that cannot be decoded is not moved away: an exact copy of it goes to the quarantine with a
reason file naming each bad line and why, and the live file is rewritten atomically with
only its good lines, in order, their `seq` unchanged (`repair_events`).

What is checked, and what is not, to stay cheap on a big store:
- `*.json` records and `events.jsonl`; logs / diffs / markdown are free text;
- files larger than `MAX_JSON_BYTES` (`MAX_EVENTS_BYTES` for event logs) are not parsed
  (records are small by design; a huge one is reported as skipped, not guessed about);
- a file whose size and modification time are unchanged since it last parsed cleanly is
  not read again: the known-good list lives in `AGENTGATE_HOME/storage-check.json`
  (per host, since it describes what this host has read). `agentgate doctor` ignores that
  list and reads everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentgate.artifacts import QUARANTINE_DIR, ArtifactStore
from agentgate.config import Settings
from agentgate.observability.events import parse_event

log = logging.getLogger("agentgate.storage_check")

MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_EVENTS_BYTES = 512 * 1024 * 1024
EVENTS_FILE = "events.jsonl"
EVENTS_REPAIRED = "events_quarantined"  # the type of the line that keeps `seq` moving past dropped lines
CACHE_FILE = "storage-check.json"
LOCK_FILE = "storage-check.lock"
_CACHE_VERSION = 1


@dataclass
class CorruptFile:
    path: str  # relative to the store root
    reason: str
    quarantined_to: str | None = None


@dataclass
class StorageReport:
    root: str
    scanned: int = 0  # JSON records and event logs seen
    parsed: int = 0  # of which read and parsed now (the rest were known good and unchanged)
    corrupt: list[CorruptFile] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # files that could not be read or moved
    in_quarantine: int = 0  # files already in the quarantine folder (from earlier checks)
    skipped: str | None = None  # why the whole check did not run (another check holds the lock)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def unresolved(self) -> list[CorruptFile]:
        """Corrupt files still in place (report-only mode, or a move that failed)."""
        return [c for c in self.corrupt if c.quarantined_to is None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def json_problem(data: bytes) -> str | None:
    """Why `data` is not a usable JSON record (with the position), or None when it parses."""
    if not data.strip():
        return "empty file: a write that never completed"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos})"
    except RecursionError:
        return "not usable JSON: nested too deeply to parse"
    return None


def _walk_json(root: Path) -> Iterator[tuple[Path, str, os.stat_result]]:
    """(path, path relative to root, stat) of every `*.json` and `events.jsonl` below root, without following symlinks.

    Skips the store's reserved top-level folders (`_quarantine`, the `_checkpoints` git repositories)
    and dot-entries (temporary files of atomic writes).
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if folder == root and entry.name.startswith("_"):  # _quarantine, _checkpoints (git): not records
                    continue
                stack.append(Path(entry.path))
            elif (entry.name.endswith(".json") or entry.name == EVENTS_FILE) and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                path = Path(entry.path)
                yield path, path.relative_to(root).as_posix(), st


def _count_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".reason"))


def _load_cache(path: Path | None, root: Path) -> dict[str, list[int]]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or data.get("root") != str(root):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _save_cache(path: Path, root: Path, files: dict[str, list[int]]) -> None:
    payload = json.dumps({"version": _CACHE_VERSION, "root": str(root), "files": files}, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _exclusive(lock_path: Path | None) -> Iterator[bool]:
    """A non-blocking lock, so that an API and a worker starting together do not both scan."""
    if lock_path is None:
        yield True
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def validate_store(
    root: Path,
    *,
    fix: bool = True,
    state_dir: Path | None = None,
    use_cache: bool = True,
    max_bytes: int = MAX_JSON_BYTES,
    max_events_bytes: int = MAX_EVENTS_BYTES,
    stop: threading.Event | None = None,
    found_by: str = "the storage check",
) -> StorageReport:
    """Parse every JSON record below `root`; with `fix`, quarantine the ones that do not parse.

    `state_dir` holds the known-good list and the lock (None: neither, e.g. in tests).
    `stop` ends the scan early (service shutdown); the report then says `interrupted`.
    """
    root = Path(root)
    started = time.monotonic()
    report = StorageReport(root=str(root))
    if not root.is_dir():
        report.seconds = round(time.monotonic() - started, 3)
        return report
    cache_path = state_dir / CACHE_FILE if state_dir is not None else None
    lock_path = state_dir / LOCK_FILE if state_dir is not None else None
    with _exclusive(lock_path) as mine:
        if not mine:
            report.skipped = "another storage check of this store is running on this host"
            return report
        known = _load_cache(cache_path, root) if use_cache else {}
        good: dict[str, list[int]] = {}
        store = ArtifactStore(root)
        for path, rel, st in _walk_json(root):
            if stop is not None and stop.is_set():
                report.interrupted = True
                good.update({k: v for k, v in known.items() if k not in good})  # keep what we did not revisit
                break
            report.scanned += 1
            signature = [st.st_size, st.st_mtime_ns]
            if known.get(rel) == signature:
                good[rel] = signature
                continue
            events = path.name == EVENTS_FILE
            if st.st_size > (max_events_bytes if events else max_bytes):
                report.too_large.append(rel)
                continue
            problem = _read_problem(path, report, rel, events=events)
            report.parsed += 1
            if problem is None:
                good[rel] = signature
                continue
            if problem == "":  # could not be read: already in report.errors
                continue
            if events:
                item = repair_events(store, path, rel, problem, fix=fix, found_by=found_by)
                if item is not None:  # None: every line parsed on the locked second read (an append in flight)
                    report.corrupt.append(item)
            else:
                report.corrupt.append(_handle_corrupt(store, path, rel, problem, fix=fix, found_by=found_by))
        report.in_quarantine = _count_files(root / QUARANTINE_DIR)
        if cache_path is not None:
            try:
                _save_cache(cache_path, root, good)
            except OSError as exc:
                report.errors.append(f"{cache_path}: cannot save the known-good list: {exc}")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _read_problem(path: Path, report: StorageReport, rel: str, *, events: bool = False) -> str | None:
    """The parse problem, None when fine, "" when unreadable (recorded as an error, never quarantined)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # gone meanwhile (purged, or replaced by an atomic rename): nothing to judge
    except OSError as exc:
        report.errors.append(f"{rel}: cannot read: {exc.strerror or exc}")
        return ""
    if events:
        # Unlocked: a line being appended right now looks torn here; the locked second read judges it.
        scan = scan_events(data)
        return scan.summary() if scan.bad else None
    return json_problem(data)


def _handle_corrupt(store: ArtifactStore, path: Path, rel: str, problem: str, *, fix: bool, found_by: str):
    item = CorruptFile(path=rel, reason=problem)
    if not fix:
        return item
    # Read once more: a live run may have replaced the file atomically since the first read.
    try:
        again = json_problem(path.read_bytes())
    except OSError:
        return item
    if again is None:
        item.reason = "parsed on a second read (replaced meanwhile); left in place"
        item.quarantined_to = str(path)
        return item
    when = datetime.now(UTC).isoformat(timespec="seconds")
    reason = f"{again}\nfound by {found_by} at {when}; original location: {rel}"
    dest = store.quarantine(path, reason)
    if dest is not None:
        item.quarantined_to = str(dest)
    return item


# -- events.jsonl ------------------------------------------------------------------------------------------

_SEQ_PREFIX = re.compile(rb'^\s*\{\s*"seq"\s*:\s*(\d{1,12})\s*[,}]')


@dataclass
class BadLine:
    number: int  # 1-based line number in the file as found
    offset: int  # byte offset of the line's start
    reason: str
    seq: int | None = None  # the `seq` still readable at the start of the line, if any


@dataclass
class EventsScan:
    """An events.jsonl split into the lines its readers can decode and those they skip."""

    lines: int = 0
    good: list[bytes] = field(default_factory=list)  # the good lines, in order, without their newline
    max_seq: int = 0  # the highest `seq` among the good lines
    bad: list[BadLine] = field(default_factory=list)
    trailing_bad: int = 0  # bad lines after the last good one

    def summary(self) -> str:
        shown = "; ".join(f"line {b.number} (byte {b.offset}): {b.reason}" for b in self.bad[:5])
        more = f"; and {len(self.bad) - 5} more" if len(self.bad) > 5 else ""
        return f"{len(self.bad)} of {self.lines} lines cannot be decoded: {shown}{more}"

    def next_seq_floor(self) -> int:
        """The lowest `seq` the next appended event may take without reusing one a reader may have seen.

        A dropped line after the last good one may have been read (and its `seq` handed out as an
        SSE id) before it was damaged; so may one whose number is still legible. Implausible numbers
        (more than one per line past the good ones) are a damaged digit, not a real sequence.
        """
        plausible = self.max_seq + self.lines
        legible = [b.seq for b in self.bad if b.seq is not None and b.seq <= plausible]
        return max([self.max_seq + self.trailing_bad, *legible])


def _line_problem(raw: bytes) -> tuple[str | None, int | None]:
    """Why a reader would skip this line (None: it decodes), and the event's `seq` when it does."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason} at byte {exc.start}", None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}", None
    except RecursionError:
        return "not usable JSON: nested too deeply to parse", None
    try:
        event = parse_event(record)
    except (ValueError, TypeError) as exc:
        return f"not an event: {str(exc).splitlines()[0][:200]}", None
    return None, event.seq


def scan_events(data: bytes) -> EventsScan:
    """Judge every line; bytes after the last newline are a torn line (a writer that died mid-line)."""
    scan = EventsScan()
    offset = 0
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the file ends with a newline, as it should
    for number, raw in enumerate(pieces, start=1):
        start, offset = offset, offset + len(raw) + 1
        scan.lines += 1
        if not raw.strip():
            continue  # blank: skipped by readers, harmless
        torn = number == len(pieces) and not data.endswith(b"\n")
        problem, seq = _line_problem(raw)
        if problem is None and torn:
            problem = "no newline at the end: a write that never completed"
        if problem is None:
            scan.good.append(raw)
            scan.max_seq = max(scan.max_seq, seq or 0)
            scan.trailing_bad = 0
            continue
        legible = _SEQ_PREFIX.match(raw)
        scan.bad.append(BadLine(number, start, problem, int(legible.group(1)) if legible else None))
        scan.trailing_bad += 1
    return scan


def _run_ids(rel: str) -> tuple[str, str]:
    parts = rel.split("/")
    return (parts[-3], parts[-2]) if len(parts) >= 3 else ("", "")


def _repaired_bytes(scan: EventsScan, rel: str, copy_rel: str, when: str) -> bytes:
    """The good lines in order; then, if the dropped ones may have carried higher numbers, one line that keeps them."""
    body = b"".join(line + b"\n" for line in scan.good)
    floor = scan.next_seq_floor()
    if floor > scan.max_seq:
        work_order_id, run_id = _run_ids(rel)
        marker = {
            "seq": floor,
            "type": EVENTS_REPAIRED,
            "ts": when,
            "work_order_id": work_order_id,
            "run_id": run_id,
            "dropped_lines": [b.number for b in scan.bad],
            "quarantined_to": copy_rel,
        }
        body += json.dumps(marker, separators=(",", ":")).encode("utf-8") + b"\n"
    return body


def _quarantine_copy(store: ArtifactStore, rel: str, data: bytes, reason: str) -> Path:
    """An exact copy of `data` at `<root>/_quarantine/<rel>.<time>` with its `.reason` file; OSError when it cannot."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = store.root / QUARANTINE_DIR / f"{rel}.{stamp}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(dest, data)
    Path(f"{dest}.reason").write_text(store.redact_text(None, reason), encoding="utf-8")
    return dest


def _atomic_write(path: Path, data: bytes, times_ns: tuple[int, int] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if times_ns is not None:
            os.utime(tmp, ns=times_ns)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def repair_events(
    store: ArtifactStore, path: Path, rel: str, problem: str, *, fix: bool, found_by: str
) -> CorruptFile | None:
    """Quarantine a copy of an events.jsonl with undecodable lines and keep only its good lines in place.

    Done under the same `flock` the event writer (`JsonlSubscriber`) appends under, so no event is
    appended meanwhile; the writer notices the new inode and appends there. Followers notice it too
    and re-read from the start, skipping by `seq` what they already delivered. The file keeps its
    modification time (the API picks a work order's newest run folder by it). Returns None when the
    locked read finds every line good (the unlocked read saw an append in flight).
    """
    item = CorruptFile(path=rel, reason=problem)
    if not fix:
        return item
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    except OSError as exc:
        item.reason += f"; cannot open it to repair it: {exc.strerror or exc}"
        return item
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            st = os.fstat(fh.fileno())
            try:
                if os.stat(path).st_ino != st.st_ino:
                    item.reason += "; replaced while it was checked: left for the next check"
                    return item
            except FileNotFoundError:
                return None
            data = fh.read()
            scan = scan_events(data)
            if not scan.bad:
                return None
            when = datetime.now(UTC).isoformat(timespec="seconds")
            item.reason = scan.summary()
            details = "\n".join(f"line {b.number} (byte {b.offset}): {b.reason}" for b in scan.bad)
            floor = scan.next_seq_floor()
            kept = (
                f"the live file keeps the {len(scan.good)} good lines in order, their seq unchanged"
                + (f", then an `{EVENTS_REPAIRED}` line with seq {floor} so that no number is used twice"
                   if floor > scan.max_seq else "")
            )  # fmt: skip
            reason = (
                f"{path}\n{item.reason}\n{details}\n{kept}\nfound by {found_by} at {when}; original location: {rel}\n"
            )
            try:
                dest = _quarantine_copy(store, rel, data, reason)
            except OSError as exc:
                store.record_failure(rel, exc)
                item.reason += f"; cannot copy it to the quarantine: {exc.strerror or exc}"
                return item
            copy_rel = dest.relative_to(store.root).as_posix()
            try:
                _atomic_write(path, _repaired_bytes(scan, rel, copy_rel, when), (st.st_atime_ns, st.st_mtime_ns))
            except OSError as exc:
                store.record_failure(rel, exc)
                item.reason += f"; copied to {dest}, but the live file cannot be rewritten: {exc.strerror or exc}"
                return item
            item.quarantined_to = str(dest)
            log.warning("events.jsonl repaired: %s: %s; original kept at %s", rel, item.reason, dest)
            return item
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_settings_store(settings: Settings, *, fix: bool = True, use_cache: bool = True, **kw: Any) -> StorageReport:
    """`validate_store` for the configured artifact store, with its state in AGENTGATE_HOME."""
    return validate_store(settings.runs_dir, fix=fix, state_dir=settings.home_dir, use_cache=use_cache, **kw)


async def startup_check(settings: Settings, who: str, stop: threading.Event | None = None) -> StorageReport | None:
    """Run the check off the event loop; log the outcome; never raise (start-up must not fail for it)."""
    try:
        report = await asyncio.to_thread(
            check_settings_store, settings, stop=stop, found_by=f"the {who} start-up storage check"
        )
    except Exception:  # noqa: BLE001 - a broken check must never keep the service from starting
        log.exception("storage check at %s start-up failed", who)
        return None
    if report.skipped:
        log.info("storage check skipped at %s start-up: %s", who, report.skipped)
    elif report.corrupt or report.errors or report.too_large:
        log.warning(
            "storage check at %s start-up: %d files, %d corrupt (quarantined in %s), %d unreadable, "
            "%d too large to check, %.2f s",
            who, report.scanned, len(report.corrupt), Path(report.root) / QUARANTINE_DIR,
            len(report.errors), len(report.too_large), report.seconds,
        )  # fmt: skip
    else:
        log.info(
            "storage check at %s start-up: %d files ok (%d parsed, the rest unchanged), %.2f s",
            who, report.scanned, report.parsed, report.seconds,
        )  # fmt: skip
    return report


@contextlib.asynccontextmanager
async def in_background(settings: Settings, who: str) -> AsyncIterator[asyncio.Task]:
    """Start the check as a task for the life of the block; on exit ask it to stop and wait for it."""
    stop = threading.Event()
    task = asyncio.create_task(startup_check(settings, who, stop), name=f"storage-check-{who}")
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
