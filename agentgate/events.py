"""Progress events of a run: the activities' entry point to the observability emitter.

`RunEventLog.emit(type_, **fields)` is kept as the call activities make; it builds a typed
event (`agentgate.observability.events`) and hands it to the store's `EventEmitter`, whose
subscribers append it to `events.jsonl` with a per-run sequence number, update the
metrics and feed any live stream. The file format is unchanged: one JSON object per line,
`seq` and `type` first. Emitting never raises into the activity.
"""

from __future__ import annotations

import logging
from typing import Any

from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext
from agentgate.observability.emitter import EVENTS_REF, emitter_for, last_sequence
from agentgate.observability.events import ProgressEvent, make_event

log = logging.getLogger(__name__)

__all__ = ["EVENTS_REF", "RunEventLog", "current_correlation_id"]


def _last_sequence(path: str) -> int:
    """Kept for callers of the first version; see `last_sequence`."""
    return last_sequence(path)


def current_correlation_id() -> str | None:
    """The current OpenTelemetry trace id (hex), or None when there is no recording trace."""
    try:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
    except Exception:
        return None
    if context is None or not context.is_valid:
        return None
    return format(context.trace_id, "032x")


class RunEventLog:
    def __init__(self, store: ArtifactStore, ctx: RunContext, iteration: int | None = None) -> None:
        self.store = store
        self.ctx = ctx
        self.iteration = iteration
        self.emitter = emitter_for(store)

    def emit(self, type_: str, **fields: Any) -> ProgressEvent | None:
        """Emit one event to every subscriber; a failure anywhere is logged and counted, never raised."""
        try:
            iteration = fields.pop("iteration", self.iteration)
            event = make_event(
                type_,
                work_order_id=self.ctx.work_order_id,
                run_id=self.ctx.run_id,
                iteration=iteration,
                correlation_id=current_correlation_id(),
                **fields,
            )
            return self.emitter.emit(event)
        except Exception as exc:
            self.store.record_failure(EVENTS_REF, exc, self.ctx)
            return None
