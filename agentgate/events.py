"""Progress events of a run, appended to `events.jsonl` with a per-run sequence number.

Events are written by activities (the workflow itself does no I/O). Only one phase of a
run executes at a time, so the sequence is continued from the file's last line when an
activity opens the log.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext

log = logging.getLogger(__name__)
EVENTS_REF = "events.jsonl"


def _last_sequence(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().splitlines()
    except FileNotFoundError:
        return 0
    for raw in reversed(tail):
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


class RunEventLog:
    def __init__(self, store: ArtifactStore, ctx: RunContext, iteration: int | None = None) -> None:
        self.store = store
        self.ctx = ctx
        self.iteration = iteration
        self._seq = _last_sequence(str(store.path(ctx, EVENTS_REF)))

    def emit(self, type_: str, **fields: Any) -> None:
        """Append one event; a storage failure is logged and counted, never raised."""
        self._seq += 1
        record = {
            "seq": self._seq,
            "type": type_,
            "ts": datetime.now(UTC).isoformat(),
            "work_order_id": self.ctx.work_order_id,
            "run_id": self.ctx.run_id,
        }
        if self.iteration is not None:
            record["iteration"] = self.iteration
        record.update({k: v for k, v in fields.items() if v is not None})
        try:
            self.store.append_jsonl(self.ctx, EVENTS_REF, record)
        except OSError as exc:
            self.store.persist_failures += 1
            log.error("event write failed: %s", exc)
