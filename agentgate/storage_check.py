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

What is checked, and what is not, to stay cheap on a big store:
- only `*.json` files; `events.jsonl` is append-only and its readers already skip a torn
  last line (a normal sight after a crash), and logs / diffs / markdown are free text;
- files larger than `MAX_JSON_BYTES` are not parsed (records are small by design; a huge
  one is reported as skipped, not guessed about);
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

log = logging.getLogger("agentgate.storage_check")

MAX_JSON_BYTES = 32 * 1024 * 1024
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
    scanned: int = 0  # JSON files seen
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
    """(path, path relative to root, stat) of every `*.json` below root, without following symlinks.

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
            elif entry.name.endswith(".json") and entry.is_file(follow_symlinks=False):
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
            if st.st_size > max_bytes:
                report.too_large.append(rel)
                continue
            problem = _read_problem(path, report, rel)
            report.parsed += 1
            if problem is None:
                good[rel] = signature
                continue
            if problem == "":  # could not be read: already in report.errors
                continue
            report.corrupt.append(_handle_corrupt(store, path, rel, problem, fix=fix, found_by=found_by))
        report.in_quarantine = _count_files(root / QUARANTINE_DIR)
        if cache_path is not None:
            try:
                _save_cache(cache_path, root, good)
            except OSError as exc:
                report.errors.append(f"{cache_path}: cannot save the known-good list: {exc}")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _read_problem(path: Path, report: StorageReport, rel: str) -> str | None:
    """The parse problem, None when fine, "" when unreadable (recorded as an error, never quarantined)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # gone meanwhile (purged, or replaced by an atomic rename): nothing to judge
    except OSError as exc:
        report.errors.append(f"{rel}: cannot read: {exc.strerror or exc}")
        return ""
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
            "storage check at %s start-up: %d JSON files, %d corrupt (quarantined in %s), %d unreadable, "
            "%d too large to check, %.2f s",
            who, report.scanned, len(report.corrupt), Path(report.root) / QUARANTINE_DIR,
            len(report.errors), len(report.too_large), report.seconds,
        )  # fmt: skip
    else:
        log.info(
            "storage check at %s start-up: %d JSON files ok (%d parsed, the rest unchanged), %.2f s",
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
