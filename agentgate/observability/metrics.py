"""Prometheus metrics of AgentGate, in prometheus_client's default registry.

The default registry (not a private one) is deliberate: the worker's metrics port and the
API's `/metrics` then expose these together with the process and platform collectors
that prometheus_client registers there, with no wiring per metric. Every metric is
updated from progress events by `MetricsSubscriber`, so API and worker count the same
way; the two persistence counters are updated where the failure happens.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_asgi_app, start_http_server

from agentgate.observability import events as ev

log = logging.getLogger(__name__)

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464

_RUN_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, float("inf"))
_ITERATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))
_PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))

RUNS_STARTED = Counter("agentgate_runs_started", "Runs started.")
RUNS_COMPLETED = Counter("agentgate_runs_completed", "Runs ended, by result (passed, failed_*, canceled).", ["result"])
ITERATIONS = Counter("agentgate_iterations", "Iterations completed (build → snapshot → verify → feedback).")
RUN_DURATION = Histogram("agentgate_run_duration_seconds", "Wall-clock duration of a run.", buckets=_RUN_BUCKETS)
ITERATION_DURATION = Histogram(
    "agentgate_iteration_duration_seconds", "Duration of one iteration.", buckets=_ITERATION_BUCKETS
)
PHASE_DURATION = Histogram(
    "agentgate_phase_duration_seconds", "Duration of one phase of an iteration.", ["phase"], buckets=_PHASE_BUCKETS
)
AGENT_TOKENS = Counter("agentgate_agent_tokens", "Tokens used by agents, by model and kind.", ["model", "kind"])
AGENT_COST = Counter("agentgate_agent_cost_usd", "Agent cost in US dollars, by model.", ["model"])
GATE_RESULTS = Counter(
    "agentgate_gate_results", "Verification gates checked, by level and result.", ["level", "result"]
)
RUNS_ACTIVE = Gauge("agentgate_runs_active", "Runs being executed (as seen by this process).")
RUNS_QUEUED = Gauge("agentgate_runs_queued", "Runs waiting for an agent slot.")
PERSIST_FAILURES = Counter("agentgate_persist_failures", "Artifact writes that failed (the run went on).")
SUBSCRIBER_ERRORS = Counter(
    "agentgate_event_subscriber_errors", "Exceptions raised by event subscribers (isolated).", ["subscriber"]
)

TOKEN_KINDS = ("input", "output", "cache_creation", "cache_read")


def set_run_gauges(*, active: int | None = None, queued: int | None = None) -> None:
    """For the API, which knows the true totals from Temporal visibility (a worker only sees its own runs)."""
    if active is not None:
        RUNS_ACTIVE.set(active)
    if queued is not None:
        RUNS_QUEUED.set(queued)


class MetricsSubscriber:
    """Turns progress events into metric updates.

    Phase durations come from the event when it carries `duration_ms`, else from the
    matching `phase_started` seen by this process (start and end of a phase are emitted by
    the same activity). `track_active` moves `agentgate_runs_active` on run start/end; turn
    it off in a process that sets the gauges from visibility with `set_run_gauges`.
    """

    name = "metrics"

    def __init__(self, *, track_active: bool = True, max_open: int = 10_000) -> None:
        self.track_active = track_active
        self._max_open = max_open
        self._phase_started: dict[tuple[str, int | None, str], float] = {}
        self._run_started: dict[str, float] = {}
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: ev.ProgressEvent) -> None:
        # A GenericEvent of a known type (fields that did not validate) has no typed fields to count.
        if isinstance(event, ev.GenericEvent):
            return
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    # -- runs ----------------------------------------------------------------------------------
    def _on_run_started(self, event: ev.RunStarted) -> None:
        RUNS_STARTED.inc()
        with self._lock:
            self._bounded(self._run_started)[event.run_id] = event.ts.timestamp()
            if self.track_active and event.run_id not in self._active:
                self._active.add(event.run_id)
                RUNS_ACTIVE.inc()

    def _run_ended(self, event: ev._RunEnd, default_result: str) -> None:
        RUNS_COMPLETED.labels(result=event.result or default_result).inc()
        with self._lock:
            started = self._run_started.pop(event.run_id, None)
            if self.track_active and event.run_id in self._active:
                self._active.discard(event.run_id)
                RUNS_ACTIVE.dec()
        if event.duration_ms is not None:
            RUN_DURATION.observe(event.duration_ms / 1000)
        elif started is not None:
            RUN_DURATION.observe(max(0.0, event.ts.timestamp() - started))

    def _on_run_completed(self, event: ev.RunCompleted) -> None:
        self._run_ended(event, event.status or "unknown")

    def _on_run_canceled(self, event: ev.RunCanceled) -> None:
        self._run_ended(event, "canceled")

    def _on_run_failed(self, event: ev.RunFailed) -> None:
        self._run_ended(event, "failed_error")

    # -- iterations and phases ------------------------------------------------------------------
    def _on_iteration_completed(self, event: ev.IterationCompleted) -> None:
        ITERATIONS.inc()
        ms = event.duration_ms if event.duration_ms is not None else sum(event.phases.values()) or None
        if ms is not None:
            ITERATION_DURATION.observe(ms / 1000)

    def _on_phase_started(self, event: ev.PhaseStarted) -> None:
        with self._lock:
            self._bounded(self._phase_started)[(event.run_id, event.iteration, event.phase)] = time.monotonic()

    def _on_phase_completed(self, event: ev.PhaseCompleted) -> None:
        with self._lock:
            started = self._phase_started.pop((event.run_id, event.iteration, event.phase), None)
        if event.duration_ms is not None:
            PHASE_DURATION.labels(phase=event.phase).observe(event.duration_ms / 1000)
        elif started is not None:
            PHASE_DURATION.labels(phase=event.phase).observe(time.monotonic() - started)
        if event.tokens or event.cost_usd:
            self._count_usage(event.model, event.tokens or {}, event.cost_usd)

    def _on_gate_checked(self, event: ev.GateChecked) -> None:
        GATE_RESULTS.labels(level=event.level or "gate", result="passed" if event.passed else "failed").inc()

    def _count_usage(self, model: str | None, tokens: dict[str, Any], cost: float | None) -> None:
        label = model or "unknown"
        for kind in TOKEN_KINDS:
            value = tokens.get(kind) or 0
            if isinstance(value, (int, float)) and value > 0:
                AGENT_TOKENS.labels(model=label, kind=kind).inc(value)
        if cost and cost > 0:
            AGENT_COST.labels(model=label).inc(cost)

    def _bounded(self, table: dict) -> dict:
        """Starts whose end never arrives (a crashed attempt) must not grow memory forever."""
        if len(table) >= self._max_open:
            for key in list(table)[: self._max_open // 10]:
                table.pop(key, None)
        return table


def start_metrics_server(host: str = DEFAULT_METRICS_HOST, port: int = DEFAULT_METRICS_PORT):
    """Serve the default registry on `http://host:port/metrics` from a daemon thread.

    Returns (server, thread); `server.server_port` is the bound port (useful with port 0)
    and `server.shutdown()` stops it.
    """
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return server, thread


class _MetricsEndpoint:
    """An ASGI app object (not a function), so Starlette routes to it as-is instead of as a request handler."""

    def __init__(self) -> None:
        self._app = make_asgi_app(registry=REGISTRY)

    async def __call__(self, scope, receive, send) -> None:
        await self._app(scope, receive, send)


def mount_metrics(app: Any, path: str = "/metrics") -> None:
    """Expose the default registry on a FastAPI/Starlette app at exactly `path` (no redirect to `path/`)."""
    from starlette.routing import Route

    app.router.routes.append(Route(path, endpoint=_MetricsEndpoint(), methods=["GET"], include_in_schema=False))


def temporal_runtime(bind_address: str = "127.0.0.1:9465", *, global_default: bool = False):
    """A Temporal `Runtime` whose SDK/Core metrics (task slots, poll latencies, schedule-to-start…) are served
    in Prometheus format on `bind_address` by the SDK's own exporter.

    They cannot share prometheus_client's registry (Core is Rust), hence a second port
    next to ours. Pass the result as `runtime=` to `Client.connect`; the workers built
    from that client report through it.
    """
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))
    if global_default:
        Runtime.set_default(runtime, error_if_already_set=False)
    return runtime
