"""OpenTelemetry traces: one trace from the API request through the workflow to every activity.

Off unless the operator asks for it with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER`), so a default install
sends nothing anywhere. Everything else (headers, timeout, compression, service name,
resource attributes, sampler) is read by the OTel SDK itself from the same `OTEL_*`
variables; we do not re-implement that parsing. Temporal carries the context across
processes with `temporalio.contrib.opentelemetry.TracingInterceptor`; our own spans
(phases, gates, the agent) nest under its `RunActivity:*` spans because they are
started in the activity's current context.

Every phase activity is decorated with `@traced_phase("build")` (and prepare, snapshot,
verify, feedback, deliver): one span per phase with the work order, run and iteration, an
`error.type` from the run's own classification when it raises or returns a failure. The
agent CLI and each verification check get a closed child span once they have finished
(`record_agent_run`, `record_gate_check`), timed by their process's own duration.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

log = logging.getLogger(__name__)

TRACER_NAME = "agentgate"
_DISABLED_VALUES = {"none", ""}


@dataclass
class TracingSetup:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    interceptor: Any  # temporalio.contrib.opentelemetry.TracingInterceptor
    tracer: trace.Tracer

    def shutdown(self) -> None:
        """Flush pending spans; call on process exit (the batch processor holds up to 5 s of spans)."""
        global _active
        try:
            self.provider.force_flush()
        finally:
            self.provider.shutdown()
            if _active is self:
                _active = _setup if _setup is not self else None


_lock = threading.Lock()
_setup: TracingSetup | None = None  # the process-wide (global) setup
_active: TracingSetup | None = None  # the latest setup: our span helpers use its tracer
_configured = False


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in _DISABLED_VALUES
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if n.strip()]
    out: list[Any] = []
    for name in names:
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
            ).lower()
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

                out.append(GrpcExporter())
            else:  # http/protobuf: the OTLP default for the HTTP exporter, and what a local collector expects
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                out.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name not in _DISABLED_VALUES:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; use otlp or console", name)
    return out


def setup_tracing(
    service_name: str = "agentgate",
    *,
    env: Mapping[str, str] | None = None,
    set_global: bool = True,
    force: bool = False,
) -> TracingSetup | None:
    """Create the tracer provider and the Temporal interceptor, or return None when tracing is off.

    With `set_global` (processes: API, worker) the provider becomes OTel's global one, so
    any library's spans join the trace; it is done once per process (OTel refuses to
    replace a global provider). Tests pass `set_global=False` and use the returned tracer.
    """
    global _setup, _active, _configured
    env = os.environ if env is None else env
    if not force and not tracing_enabled(env):
        return None
    with _lock:
        if set_global and _configured:
            return _setup
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor

        # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over our default name.
        resource = Resource.create({SERVICE_NAME: service_name}).merge(
            Resource.create({SERVICE_NAME: env["OTEL_SERVICE_NAME"]}) if env.get("OTEL_SERVICE_NAME") else Resource({})
        )
        provider = TracerProvider(resource=resource)
        for exporter in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer(TRACER_NAME)
        setup = TracingSetup(provider=provider, interceptor=TracingInterceptor(tracer), tracer=tracer)
        if set_global:
            trace.set_tracer_provider(provider)
            _setup, _configured = setup, True
        _active = setup
        return setup


def temporal_interceptors(service_name: str = "agentgate") -> list[Any]:
    """What to pass as `interceptors=` to `Client.connect` (workers built from that client inherit it).

    Empty when tracing is off, so callers can always write `interceptors=temporal_interceptors()`.
    """
    setup = setup_tracing(service_name)
    return [setup.interceptor] if setup is not None else []


def shutdown_tracing() -> None:
    if _setup is not None:
        _setup.shutdown()


def _tracer(tracer: trace.Tracer | None) -> trace.Tracer:
    if tracer is not None:
        return tracer
    if _active is not None:
        return _active.tracer
    return trace.get_tracer(TRACER_NAME)  # a no-op tracer unless some provider was set globally


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span in hex, or (None, None) outside any recording span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


@contextmanager
def phase_span(
    phase: str,
    *,
    work_order_id: str | None = None,
    run_id: str | None = None,
    iteration: int | None = None,
    tracer: trace.Tracer | None = None,
    **attributes: Any,
) -> Iterator[Span]:
    """A span per phase (`phase build`), children of the activity's span; exceptions mark it as an error."""
    attrs = _clean(
        {
            "agentgate.phase": phase,
            "agentgate.work_order_id": work_order_id,
            "agentgate.run_id": run_id,
            "agentgate.iteration": iteration,
            **{f"agentgate.{k}": v for k, v in attributes.items()},
        }
    )
    with _tracer(tracer).start_as_current_span(f"phase {phase}", attributes=attrs) as span:
        yield span


@contextmanager
def gate_span(
    gate: str,
    *,
    level: str | None = None,
    command: str | None = None,
    tracer: trace.Tracer | None = None,
) -> Iterator[Span]:
    """A span per verification gate; call `record_gate(span, passed, exit_code)` before leaving it."""
    attrs = _clean({"agentgate.gate": gate, "agentgate.gate.level": level, "agentgate.gate.command": command})
    with _tracer(tracer).start_as_current_span(f"gate {gate}", attributes=attrs) as span:
        yield span


def record_gate(span: Span, passed: bool, exit_code: int | None = None, duration_ms: int | None = None) -> None:
    span.set_attributes(
        _clean(
            {
                "agentgate.gate.passed": passed,
                "agentgate.gate.exit_code": exit_code,
                "agentgate.duration_ms": duration_ms,
            }
        )
    )
    if not passed:
        span.set_status(Status(StatusCode.ERROR, "gate failed"))


# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/): the
# attributes below are the spec's names; cost and turns have no standard name yet, so
# they live under our own prefix next to them.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
AGENT_COST_USD = "agentgate.agent.cost_usd"
AGENT_TURNS = "agentgate.agent.turns"
AGENT_TOOL_CALLS = "agentgate.agent.tool_calls"
AGENT_EXIT_CODE = "agentgate.agent.exit_code"


@contextmanager
def agent_span(
    system: str,
    *,
    model: str | None = None,
    iteration: int | None = None,
    session_id: str | None = None,
    tracer: trace.Tracer | None = None,
) -> Iterator[Span]:
    """The span around one agent CLI run (`invoke_agent <system>`); finish it with `record_agent_result`."""
    attrs = _clean(
        {
            GEN_AI_OPERATION: "invoke_agent",
            GEN_AI_SYSTEM: system,
            GEN_AI_AGENT_NAME: system,
            GEN_AI_REQUEST_MODEL: model,
            GEN_AI_CONVERSATION_ID: session_id,
            "agentgate.iteration": iteration,
        }
    )
    with _tracer(tracer).start_as_current_span(
        f"invoke_agent {system}", kind=trace.SpanKind.CLIENT, attributes=attrs
    ) as span:
        yield span


def record_agent_result(span: Span, result: Any) -> None:
    """Copy usage from an `AgentResult` or `AgentSummary` (anything with their field names) onto the agent span."""
    tokens = getattr(result, "tokens", None)
    attrs = _clean(
        {
            GEN_AI_RESPONSE_MODEL: getattr(result, "model", None),
            GEN_AI_INPUT_TOKENS: getattr(tokens, "input", None),
            GEN_AI_OUTPUT_TOKENS: getattr(tokens, "output", None),
            "gen_ai.usage.cache_creation.input_tokens": getattr(tokens, "cache_creation", None) or None,
            "gen_ai.usage.cache_read.input_tokens": getattr(tokens, "cache_read", None) or None,
            GEN_AI_CONVERSATION_ID: getattr(result, "session_id", None),
            AGENT_COST_USD: getattr(result, "cost_usd", None),
            AGENT_TURNS: getattr(result, "turns", None),
            AGENT_EXIT_CODE: getattr(result, "exit_code", None),
        }
    )
    calls = getattr(result, "tool_calls", None)
    if calls is not None:
        attrs[AGENT_TOOL_CALLS] = calls if isinstance(calls, int) else len(calls)
    span.set_attributes(attrs)
    error = getattr(result, "error", None)
    if getattr(result, "success", True) is False:
        kind = getattr(getattr(error, "type", None), "value", None) or "agent_failed"
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, getattr(error, "message", None) or kind))


# -- phases of the activities -------------------------------------------------------------------------

ERROR_TYPE = "error.type"  # the semantic-convention attribute; our values are `ErrorType` names
R = TypeVar("R")


def exception_type(exc: BaseException, phase: str | None = None) -> str:
    """The `ErrorType` of an exception as the run's records would classify it (canceled, workspace_error, ...)."""
    if isinstance(exc, asyncio.CancelledError):
        return "canceled"
    try:
        from agentgate.observability.errors import classify_exception

        return classify_exception(exc, phase).type.value
    except Exception:  # classification must never hide the original error
        return type(exc).__name__


def record_phase_result(span: Span, phase: str, result: Any) -> None:
    """Mark the phase span from what the activity returned: a `BuildError` it carries, or failed gates."""
    error = getattr(result, "error", None)
    kind = getattr(getattr(error, "type", None), "value", None)
    if getattr(result, "passed", None) is not None and phase == "verify":
        span.set_attribute("agentgate.passed", bool(result.passed))
        if not result.passed and kind is None:
            from agentgate.observability.errors import error_from_verification

            found = error_from_verification(result)
            kind = found.type.value if found is not None else "test_failed"
            error = found
    if getattr(result, "success", None) is not None:
        span.set_attribute("agentgate.success", bool(result.success))
    if kind is not None:
        span.set_attribute(ERROR_TYPE, kind)
        span.set_status(Status(StatusCode.ERROR, getattr(error, "message", None) or kind))


def traced_phase(phase: str) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Run an activity method inside the span `phase <phase>`, attributed with its input's work order, run, iteration.

    Put it under `@activity.defn`. The input's `ctx` and `iteration` name the span's
    attributes; an exception marks the span as an error with its classified `error.type`
    (and is re-raised unchanged), a returned failure (an agent's `BuildError`, failed
    gates) marks it too. With tracing off the spans are no-ops that cost microseconds.
    """

    def decorate(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(self: Any, inp: Any, *args: Any, **kwargs: Any) -> R:
            ctx = getattr(inp, "ctx", None)
            with phase_span(
                phase,
                work_order_id=getattr(ctx, "work_order_id", None),
                run_id=getattr(ctx, "run_id", None),
                iteration=getattr(inp, "iteration", None),
                operation=fn.__name__,
            ) as span:
                try:
                    result = await fn(self, inp, *args, **kwargs)
                except BaseException as exc:
                    span.set_attribute(ERROR_TYPE, exception_type(exc, phase))
                    if not isinstance(exc, Exception):  # use_span records only Exception subclasses
                        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    raise
                record_phase_result(span, phase, result)
                return result

        return wrapper

    return decorate


def _finished_span(
    name: str, duration_ms: int | None, attributes: Mapping[str, Any], kind: Any = None
) -> tuple[Span, int]:
    """A child of the current span for something that just ended and took `duration_ms` (a process we awaited).

    Returns the span and the end time to pass to `span.end(end_time=…)` once its attributes are set.
    """
    end = time.time_ns()
    start = end - max(0, int(duration_ms or 0)) * 1_000_000
    span = _tracer(None).start_span(
        name, start_time=start, attributes=_clean(attributes), kind=kind or trace.SpanKind.INTERNAL
    )
    return span, end


def record_agent_run(system: str, result: Any) -> None:
    """The `invoke_agent <system>` span of a finished agent CLI run, with the GenAI attributes of its result.

    Started at `duration_ms` before now: the agent was a child process the activity awaited,
    so its span is a closed interval inside the build phase.
    """
    span, end = _finished_span(
        f"invoke_agent {system}",
        getattr(result, "duration_ms", None),
        {
            GEN_AI_OPERATION: "invoke_agent",
            GEN_AI_SYSTEM: system,
            GEN_AI_AGENT_NAME: system,
            "agentgate.iteration": getattr(result, "iteration", None),
        },
        kind=trace.SpanKind.CLIENT,
    )
    record_agent_result(span, result)
    span.end(end_time=end)


def record_gate_check(check: Any) -> None:
    """The `gate <name>` span of one finished verification check (a `CheckResult`)."""
    level = getattr(check, "level", None)
    span, end = _finished_span(
        f"gate {check.name}",
        getattr(check, "duration_ms", None),
        {
            "agentgate.gate": check.name,
            "agentgate.gate.level": getattr(level, "value", level),
            "agentgate.gate.kind": getattr(check, "kind", None),
            "agentgate.gate.command": getattr(check, "command", None),
        },
    )
    record_gate(span, bool(check.passed), getattr(check, "exit_code", None), getattr(check, "duration_ms", None))
    if not check.passed:
        from agentgate.observability.errors import classify_gate

        span.set_attribute(ERROR_TYPE, classify_gate(check).value)
    span.end(end_time=end)
