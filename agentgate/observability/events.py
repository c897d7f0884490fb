"""Typed progress events: the one vocabulary shared by events.jsonl, SSE, WebSocket, metrics and `follow`.

Every event is discriminated by `type`. Models allow extra fields, because activities add
context freely (`driver=`, `gates=`…) and an old or newer events.jsonl line must load
anyway: an unknown `type`, or a known one whose fields no longer fit, becomes a
`GenericEvent` rather than an error. Nothing here does I/O, so the module is safe to
import inside the workflow sandbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

TERMINAL_TYPES = frozenset({"run_completed", "run_canceled", "run_failed"})
# What a live stream can be narrowed to (WebSocket `filters`): the agent's tool calls, its output, or
# everything else (run, iteration, phase, gate, delivery and usage events).
OUTPUT_TYPES = frozenset({"agent_message", "agent_output"})
TOOL_TYPES = frozenset({"agent_tool_call", "agent_tool_result"})
STREAM_FILTERS = ("progress", "output", "tool_calls")


def event_category(type_: str) -> str:
    """The stream filter an event type belongs to: `tool_calls`, `output` or `progress`."""
    if type_ in TOOL_TYPES:
        return "tool_calls"
    if type_ in OUTPUT_TYPES:
        return "output"
    return "progress"


# Live-stream text is bounded: the full bytes are in the agent's stdout/stderr files.
MAX_TEXT_CHARS = 8000


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    seq: int = 0
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))
    work_order_id: str
    run_id: str
    correlation_id: str | None = Field(default=None, description="The trace id when tracing is on, else the run id.")
    iteration: int | None = None
    # Set once the store's redactor has cleaned the event, so it is not scanned twice.
    _redacted: bool = PrivateAttr(default=False)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES  # type: ignore[attr-defined]

    def to_record(self) -> dict[str, Any]:
        """The events.jsonl object: `seq` and `type` first, then the rest without nulls."""
        body = self.model_dump(mode="json", exclude_none=True, fallback=repr)
        return {"seq": body.pop("seq"), "type": body.pop("type"), **body}

    def to_json(self) -> str:
        return json.dumps(self.to_record(), separators=(",", ":"), default=str)


# -- run lifecycle ------------------------------------------------------------------------------


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    status: str | None = None
    max_iterations: int | None = None
    agent: str | None = None
    task: str | None = Field(default=None, description="The first characters of the task prompt.")


class _RunEnd(_Event):
    status: str | None = None
    state: str | None = None
    result: str | None = None
    iterations: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    error_type: str | None = None
    tokens: dict[str, int] | None = None
    cost_usd: float | None = None


class RunCompleted(_RunEnd):
    type: Literal["run_completed"] = "run_completed"


class RunCanceled(_RunEnd):
    type: Literal["run_canceled"] = "run_canceled"
    reason: str | None = None


class RunFailed(_RunEnd):
    type: Literal["run_failed"] = "run_failed"


# -- iterations and phases ------------------------------------------------------------------------


class GateSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    passed: bool
    level: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None


class IterationStarted(_Event):
    type: Literal["iteration_started"] = "iteration_started"
    max_iterations: int | None = None
    feedback_ref: str | None = None


class IterationCompleted(_Event):
    type: Literal["iteration_completed"] = "iteration_completed"
    passed: bool | None = None
    decision: str | None = None
    phases: dict[str, int] = Field(default_factory=dict, description="Duration of each phase in ms.")
    gates: list[GateSummary] = Field(default_factory=list)
    duration_ms: int | None = None
    error_type: str | None = None


class PhaseStarted(_Event):
    type: Literal["phase_started"] = "phase_started"
    phase: str


class PhaseCompleted(_Event):
    type: Literal["phase_completed"] = "phase_completed"
    phase: str
    success: bool | None = None
    passed: bool | None = None
    canceled: bool | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    # The build phase's totals; the metrics count tokens and cost from these (not from agent_usage).
    model: str | None = None
    tokens: dict[str, int] | None = None
    cost_usd: float | None = None


class GateChecked(_Event):
    type: Literal["gate_checked"] = "gate_checked"
    gate: str
    passed: bool
    level: str | None = None
    kind: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    output_ref: str | None = None


class DeliveryStarted(_Event):
    type: Literal["delivery_started"] = "delivery_started"
    mode: str | None = None
    branch: str | None = None


class DeliveryCompleted(_Event):
    type: Literal["delivery_completed"] = "delivery_completed"
    mode: str | None = None
    branch: str | None = None
    commit: str | None = None
    target: str | None = None
    success: bool | None = None
    pr_url: str | None = None


# -- agent stream -----------------------------------------------------------------------------------


class AgentMessage(_Event):
    type: Literal["agent_message"] = "agent_message"
    text: str | None = None
    stream: str | None = None
    truncated: bool | None = None


class AgentOutput(_Event):
    type: Literal["agent_output"] = "agent_output"
    text: str | None = None
    stream: str | None = None
    truncated: bool | None = None


class AgentToolCall(_Event):
    type: Literal["agent_tool_call"] = "agent_tool_call"
    tool: dict[str, Any] | None = None


class AgentToolResult(_Event):
    type: Literal["agent_tool_result"] = "agent_tool_result"
    tool: dict[str, Any] | None = None


class AgentUsage(_Event):
    type: Literal["agent_usage"] = "agent_usage"
    tokens: dict[str, int] | None = None
    cost_usd: float | None = None
    model: str | None = None


class GenericEvent(_Event):
    """Any other line: an old type, a new one this version does not know, or one that no longer validates."""

    type: str


TypedEvent = Annotated[
    RunStarted
    | RunCompleted
    | RunCanceled
    | RunFailed
    | IterationStarted
    | IterationCompleted
    | PhaseStarted
    | PhaseCompleted
    | GateChecked
    | DeliveryStarted
    | DeliveryCompleted
    | AgentMessage
    | AgentOutput
    | AgentToolCall
    | AgentToolResult
    | AgentUsage,
    Field(discriminator="type"),
]
ProgressEvent = TypedEvent | GenericEvent

EVENT_TYPES: dict[str, type[_Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        RunStarted,
        RunCompleted,
        RunCanceled,
        RunFailed,
        IterationStarted,
        IterationCompleted,
        PhaseStarted,
        PhaseCompleted,
        GateChecked,
        DeliveryStarted,
        DeliveryCompleted,
        AgentMessage,
        AgentOutput,
        AgentToolCall,
        AgentToolResult,
        AgentUsage,
    )
}
_TYPED: TypeAdapter[Any] = TypeAdapter(TypedEvent)


def parse_event(record: dict[str, Any] | str | bytes) -> ProgressEvent:
    """Load one events.jsonl object; never fails on a well-formed object with a `type`.

    Old lines lack `correlation_id`/`ts`, unknown types exist: both load as a typed or a
    generic event. Raises ValueError only for something that is not an event at all.
    """
    if isinstance(record, (str, bytes)):
        record = json.loads(record)
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise ValueError("an event is a JSON object with a string `type`")
    record = {"work_order_id": "", "run_id": "", **record}
    if record["type"] in EVENT_TYPES:
        try:
            return _TYPED.validate_python(record)
        except ValidationError:
            pass
    return GenericEvent.model_validate(record)


def _bound_text(fields: dict[str, Any]) -> None:
    text = fields.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
        fields["text"] = text[:MAX_TEXT_CHARS]
        fields["truncated"] = True
        fields["text_chars"] = len(text)


def make_event(
    type_: str,
    *,
    work_order_id: str,
    run_id: str,
    iteration: int | None = None,
    correlation_id: str | None = None,
    **fields: Any,
) -> ProgressEvent:
    """Build an event from loose keyword fields (the `RunEventLog.emit` style); never raises on bad fields.

    A field that does not fit the typed model (a caller's mistake) must not cost the event:
    it is kept as a `GenericEvent` with the raw fields instead.
    """
    body = {
        k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v) for k, v in fields.items() if v is not None
    }
    _bound_text(body)
    body.update(type=type_, work_order_id=work_order_id, run_id=run_id, correlation_id=correlation_id or run_id)
    if iteration is not None:
        body["iteration"] = iteration
    cls = EVENT_TYPES.get(type_)
    if cls is not None:
        try:
            return cls.model_validate(body)
        except ValidationError:
            pass
    try:
        return GenericEvent.model_validate(body)
    except ValidationError:
        safe = {k: (v if _jsonable(v) else repr(v)) for k, v in body.items()}
        safe.pop("seq", None)
        safe.pop("ts", None)
        return GenericEvent.model_validate(safe)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
