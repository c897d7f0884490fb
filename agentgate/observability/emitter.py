"""One emitter, independent subscribers: the durable log, metrics, and whatever a process adds (live streams).

Subscribers run in registration order, each inside its own try/except: an exception is
logged and counted in `agentgate_event_subscriber_errors_total` and never reaches the
next subscriber or the caller (an activity whose run must not fail because a dashboard
did). The `JsonlSubscriber` goes first because it assigns the sequence number that the
others (and SSE `id:` fields) then see.

Before any subscriber sees an event it passes through the store's redactor (the same one
every artifact write uses), so no subscriber, file or live stream ever carries a secret
the agent printed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext
from agentgate.observability import events as ev
from agentgate.observability import metrics

log = logging.getLogger(__name__)

EVENTS_REF = "events.jsonl"
Subscriber = Callable[[ev.ProgressEvent], Any]


def _name(subscriber: Subscriber) -> str:
    return str(getattr(subscriber, "name", None) or getattr(subscriber, "__name__", None) or type(subscriber).__name__)


Redact = Callable[[ev.ProgressEvent], ev.ProgressEvent]


def redact_event(store: ArtifactStore, event: ev.ProgressEvent) -> ev.ProgressEvent:
    """The event with every secret replaced, judged on its JSON form (one pass; re-parsed only when it changed)."""
    if event._redacted:
        return event
    ids = event.work_order_id and event.run_id
    redactor = store.redactor(RunContext(work_order_id=event.work_order_id, run_id=event.run_id) if ids else None)
    text = event.to_json()
    cleaned = redactor.redact(text)
    if cleaned != text:
        seq = event.seq
        event = ev.parse_event(cleaned)
        event.seq = seq
    event._redacted = True
    return event


class EventEmitter:
    def __init__(self, subscribers: list[Subscriber] | None = None, redact: Redact | None = None) -> None:
        self._subscribers: list[Subscriber] = list(subscribers or [])
        self._redact = redact
        self._lock = threading.Lock()
        self._fallback_seq: OrderedDict[str, int] = OrderedDict()
        self.errors = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it again."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    @property
    def subscribers(self) -> list[Subscriber]:
        with self._lock:
            return list(self._subscribers)

    def emit(self, event: ev.ProgressEvent) -> ev.ProgressEvent:
        if self._redact is not None:
            try:
                event = self._redact(event)
            except Exception:  # a broken redactor must not let the raw event through: drop its payload
                log.exception("redacting %s failed; its fields are withheld", event.type)
                event = ev.GenericEvent(type=event.type, work_order_id=event.work_order_id, run_id=event.run_id,
                                        iteration=event.iteration, correlation_id=event.correlation_id,
                                        redaction_failed=True)  # fmt: skip
                event._redacted = True
        for subscriber in self.subscribers:
            if event.seq <= 0 and not getattr(subscriber, "assigns_seq", False):
                self._assign_fallback_seq(event)
            try:
                subscriber(event)
            except Exception:
                self.errors += 1
                name = _name(subscriber)
                log.exception("event subscriber %s failed on %s", name, event.type)
                try:
                    metrics.SUBSCRIBER_ERRORS.labels(subscriber=name).inc()
                except Exception:  # the counter itself must not be the thing that breaks isolation
                    pass
        if event.seq <= 0:
            self._assign_fallback_seq(event)
        else:
            self._remember(event)
        return event

    def _assign_fallback_seq(self, event: ev.ProgressEvent) -> None:
        """When the durable log could not number an event, keep the live stream ordered anyway."""
        with self._lock:
            event.seq = self._fallback_seq.get(event.run_id, 0) + 1
        self._remember(event)

    def _remember(self, event: ev.ProgressEvent) -> None:
        with self._lock:
            self._fallback_seq[event.run_id] = max(event.seq, self._fallback_seq.get(event.run_id, 0))
            self._fallback_seq.move_to_end(event.run_id)
            while len(self._fallback_seq) > 1000:
                self._fallback_seq.popitem(last=False)


def last_sequence(path: str | Path) -> int:
    """The `seq` of the last complete, parseable line, scanning back as far as needed (lines can be long)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return 0
    with fh:
        end = fh.seek(0, os.SEEK_END)
        chunk = 65536
        pos = end
        carry = b""
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start) + carry
            lines = block.split(b"\n")
            # lines[0] may be cut at `start`: keep it for the next round unless we reached the beginning
            carry = lines[0] if start > 0 else b""
            candidates = lines[1:] if start > 0 else lines
            for raw in reversed(candidates):
                if not raw.strip():
                    continue
                try:
                    return int(json.loads(raw)["seq"])
                except (ValueError, KeyError, TypeError):
                    continue
            pos = start
            chunk = min(chunk * 2, 8 * 1024 * 1024)
    return 0


class JsonlSubscriber:
    """Appends each event to `<run>/events.jsonl` and numbers it 1, 2, 3… per run.

    The number is taken under an exclusive `flock` on the file, continuing from the file's
    last line, so activities of the same run in different worker processes (or retried
    attempts) never reuse a number. The last number is cached with the file size and inode this
    process left behind: a file nobody else touched (or rewrote: the storage check's repair of a
    corrupt file) needs no re-read.
    """

    name = "events.jsonl"
    assigns_seq = True

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # path: (size, last seq, inode)

    def __call__(self, event: ev.ProgressEvent) -> None:
        ctx = RunContext(work_order_id=event.work_order_id, run_id=event.run_id)
        clean = redact_event(self.store, event)  # the same object when the emitter did it already
        try:
            self._append(self.store.path(ctx, EVENTS_REF), clean)
            event.seq = clean.seq
        except OSError as exc:
            self.store.record_failure(EVENTS_REF, exc, ctx)
            # the live stream still gets the event; the emitter gives it a fallback number

    def _append(self, path: Path, event: ev.ProgressEvent) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for _ in range(5):
                if self._append_locked(path, event):
                    return
            raise OSError(f"{path} kept being replaced while an event was appended")

    def _append_locked(self, path: Path, event: ev.ProgressEvent) -> bool:
        """Append under the file's lock; False when the path was replaced meanwhile (try again on the new file).

        The storage check rewrites a corrupt file atomically while holding this lock: a writer
        that opened the old inode before the rename must not append to a file nobody reads.
        """
        key = str(path)
        with open(path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                st = os.fstat(fh.fileno())
                try:
                    if os.stat(path).st_ino != st.st_ino:
                        return False
                except FileNotFoundError:
                    return False
                size = st.st_size
                cached = self._cache.get(key)
                if cached is not None and cached[0] == size and cached[2] == st.st_ino:
                    last = cached[1]
                else:
                    last = last_sequence(path)
                    if size and _last_byte(path, size) != b"\n":
                        fh.write(b"\n")  # end a torn line left by a crashed writer; readers skip it
                        size += 1
                if event.seq <= last:
                    event.seq = last + 1
                data = (event.to_json() + "\n").encode("utf-8")
                fh.write(data)
                fh.flush()
                self._cache[key] = (size + len(data), event.seq, st.st_ino)
                self._cache.move_to_end(key)
                while len(self._cache) > 512:
                    self._cache.popitem(last=False)
                return True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


# -- process-wide wiring ------------------------------------------------------------------------------

_global_lock = threading.Lock()
_metrics_subscriber: metrics.MetricsSubscriber | None = None
_extra_subscribers: list[Subscriber] = []
_store_emitters: dict[int, tuple[ArtifactStore, EventEmitter]] = {}


def metrics_subscriber() -> metrics.MetricsSubscriber:
    global _metrics_subscriber
    with _global_lock:
        if _metrics_subscriber is None:
            _metrics_subscriber = metrics.MetricsSubscriber()
        return _metrics_subscriber


def add_subscriber(subscriber: Subscriber) -> Callable[[], None]:
    """Register a process-wide subscriber (e.g. the API's in-process WebSocket broadcaster, a test probe).

    It receives every event this process emits for any store, after the durable log and
    the metrics. Returns the function that removes it.
    """
    with _global_lock:
        _extra_subscribers.append(subscriber)

    def remove() -> None:
        with _global_lock:
            if subscriber in _extra_subscribers:
                _extra_subscribers.remove(subscriber)

    return remove


class _ExtraFanout:
    """Forwards to the process-wide extra subscribers, each isolated like a first-class subscriber."""

    name = "extra"

    def __init__(self, emitter_errors: Callable[[Subscriber, Exception], None]) -> None:
        self._on_error = emitter_errors

    def __call__(self, event: ev.ProgressEvent) -> None:
        with _global_lock:
            targets = list(_extra_subscribers)
        for subscriber in targets:
            try:
                subscriber(event)
            except Exception as exc:
                self._on_error(subscriber, exc)


def _count_extra_error(subscriber: Subscriber, exc: Exception) -> None:
    name = _name(subscriber)
    log.error("event subscriber %s failed: %r", name, exc, exc_info=exc)
    metrics.SUBSCRIBER_ERRORS.labels(subscriber=name).inc()


def emitter_for(store: ArtifactStore) -> EventEmitter:
    """The emitter of one artifact store: events.jsonl, then metrics, then process-wide subscribers."""
    with _global_lock:
        entry = _store_emitters.get(id(store))
        if entry is not None and entry[0] is store:
            return entry[1]
    emitter = EventEmitter(
        [JsonlSubscriber(store), metrics_subscriber(), _ExtraFanout(_count_extra_error)],
        redact=lambda event: redact_event(store, event),
    )
    with _global_lock:
        entry = _store_emitters.get(id(store))
        if entry is not None and entry[0] is store:
            return entry[1]
        if len(_store_emitters) > 64:  # stores are few and long-lived; tests create many
            _store_emitters.clear()
        _store_emitters[id(store)] = (store, emitter)
    return emitter
