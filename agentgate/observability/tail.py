"""Follow a run's events.jsonl from another process: the API's SSE stream, `agentgate follow`.

The worker writes the file, the API reads it, so the file (not an in-process queue) is the
channel; this also makes a stream survive an API restart (reconnect with Last-Event-ID).
Polling a `stat` every 50 ms costs microseconds and keeps the latency well under the
100 ms target, which is simpler and as portable as inotify. Bytes after the last newline
are a line still being written: they are kept until their newline arrives.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from agentgate.observability.events import TERMINAL_TYPES, ProgressEvent, parse_event

log = logging.getLogger(__name__)

StopCheck = Callable[[], bool | Awaitable[bool]]


async def _should_stop(check: StopCheck | None) -> bool:
    if check is None:
        return False
    value = check()
    if inspect.isawaitable(value):
        value = await value
    return bool(value)


async def follow_events(
    path: str | Path,
    after_seq: int = 0,
    stop_when_terminal: bool = True,
    poll_interval: float = 0.05,
    *,
    idle_timeout: float | None = None,
    should_stop: StopCheck | None = None,
    stop_check_interval: float = 1.0,
) -> AsyncIterator[ProgressEvent]:
    """Yield the events with `seq > after_seq`: those already in the file, then new ones as they are appended.

    Ends after a run_completed / run_canceled / run_failed event when `stop_when_terminal`
    (also when that event is at or before `after_seq`: a client that reconnects after
    the end must not hang). Also ends after `idle_timeout` seconds without a new line, or
    when `should_stop()` (sync or async, checked every `stop_check_interval` s while
    idle) says so: the API passes "the workflow is closed", so a run whose worker died
    before writing its last event does not hold the stream open forever. The file may
    not exist yet; it is waited for.
    """
    path = Path(path)
    fh = None
    inode: int | None = None
    buffer = b""
    last_line_at = time.monotonic()
    last_check = 0.0
    try:
        while True:
            if fh is None:
                try:
                    fh = open(path, "rb")
                    inode = os.fstat(fh.fileno()).st_ino
                    buffer = b""
                except FileNotFoundError:
                    fh = None
            got_line = False
            if fh is not None:
                chunk = fh.read()
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for raw in lines:
                        if not raw.strip():
                            continue
                        event = _parse(raw, path)
                        if event is None:
                            continue
                        got_line = True
                        if event.seq > after_seq:
                            after_seq = event.seq  # a rewritten file is re-read from the start: no repeats
                            yield event
                        if stop_when_terminal and event.type in TERMINAL_TYPES:
                            return
                elif _replaced(path, inode, fh):
                    fh.close()
                    fh = None  # rewritten or rotated: start over; seq filtering drops what we saw
                    continue
            now = time.monotonic()
            if got_line:
                last_line_at = now
                continue  # drain whatever else is there before sleeping
            if idle_timeout is not None and now - last_line_at >= idle_timeout:
                return
            if should_stop is not None and now - last_check >= stop_check_interval:
                last_check = now
                if await _should_stop(should_stop):
                    # one last read: the final event may have landed just before the check
                    if fh is not None:
                        rest = buffer + fh.read()
                        for raw in rest.split(b"\n"):
                            event = _parse(raw, path) if raw.strip() else None
                            if event is not None and event.seq > after_seq:
                                yield event
                    return
            await asyncio.sleep(poll_interval)
    finally:
        if fh is not None:
            fh.close()


def _parse(raw: bytes, path: Path) -> ProgressEvent | None:
    try:
        return parse_event(json.loads(raw))
    except (ValueError, TypeError) as exc:
        log.warning("skipping an unreadable line in %s: %s", path, exc)
        return None


def _replaced(path: Path, inode: int | None, fh) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_ino != inode or st.st_size < fh.tell()


def read_events(path: str | Path, after_seq: int = 0) -> list[ProgressEvent]:
    """Every complete event currently in the file (for `GET …/events` without streaming, and tests)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]  # the part after the last newline is still being written
    events = [_parse(raw, Path(path)) for raw in lines if raw.strip()]
    return [e for e in events if e is not None and e.seq > after_seq]
