"""Metrics are scraped over real HTTP and parsed with the official parser (and promtool when installed)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from agentgate.artifacts import ArtifactStore
from agentgate.events import RunEventLog
from agentgate.models import RunContext
from agentgate.observability import metrics

REQUIRED = {
    "agentgate_runs_started": "counter",
    "agentgate_runs_completed": "counter",
    "agentgate_iterations": "counter",
    "agentgate_run_duration_seconds": "histogram",
    "agentgate_iteration_duration_seconds": "histogram",
    "agentgate_phase_duration_seconds": "histogram",
    "agentgate_agent_tokens": "counter",
    "agentgate_agent_cost_usd": "counter",
    "agentgate_gate_results": "counter",
    "agentgate_runs_active": "gauge",
    "agentgate_runs_queued": "gauge",
    "agentgate_persist_failures": "counter",
    "agentgate_event_subscriber_errors": "counter",
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def emit_one_run(tmp_path, run_id: str) -> None:
    store = ArtifactStore(tmp_path / "runs")
    ctx = RunContext(work_order_id="wo_metrics0001", run_id=run_id)
    RunEventLog(store, ctx).emit("run_started", status="running")
    log = RunEventLog(store, ctx, iteration=1)
    log.emit("phase_started", phase="build")
    log.emit(
        "phase_completed",
        phase="build",
        success=True,
        duration_ms=2500,
        model="test-model",
        tokens={"input": 100, "output": 40, "cache_read": 7},
        cost_usd=0.25,
    )
    log.emit("gate_checked", gate="pytest", passed=False, level="L1", exit_code=1)
    log.emit("gate_checked", gate="ruff", passed=True, level="L0", exit_code=0)
    log.emit("iteration_completed", passed=False, phases={"build": 2500, "verify": 500})
    RunEventLog(store, ctx).emit("run_completed", status="succeeded", result="passed", duration_ms=65_000)


@pytest.fixture(scope="module")
def server():
    srv, thread = metrics.start_metrics_server("127.0.0.1", 0)
    yield f"http://127.0.0.1:{srv.server_port}/metrics"
    srv.shutdown()
    srv.server_close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def test_metrics_server_exposes_every_metric_and_counts_events(server, tmp_path):
    before = samples(scrape(server))
    emit_one_run(tmp_path, "run-metrics-1")
    text = scrape(server)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in REQUIRED.items():
        assert families.get(name) == kind, (name, families.get(name))
    after = samples(text)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("agentgate_runs_started_total") == 1
    assert delta("agentgate_runs_completed_total", result="passed") == 1
    assert delta("agentgate_iterations_total") == 1
    assert delta("agentgate_run_duration_seconds_count") == 1
    assert delta("agentgate_run_duration_seconds_sum") == pytest.approx(65.0)
    assert delta("agentgate_iteration_duration_seconds_sum") == pytest.approx(3.0)
    assert delta("agentgate_phase_duration_seconds_count", phase="build") == 1
    assert delta("agentgate_phase_duration_seconds_sum", phase="build") == pytest.approx(2.5)
    assert delta("agentgate_agent_tokens_total", model="test-model", kind="input") == 100
    assert delta("agentgate_agent_tokens_total", model="test-model", kind="output") == 40
    assert delta("agentgate_agent_tokens_total", model="test-model", kind="cache_read") == 7
    assert delta("agentgate_agent_cost_usd_total", model="test-model") == pytest.approx(0.25)
    assert delta("agentgate_gate_results_total", level="L1", result="failed") == 1
    assert delta("agentgate_gate_results_total", level="L0", result="passed") == 1
    assert delta("agentgate_runs_active") == 0  # started and ended


def test_phase_duration_measured_between_start_and_end_without_duration_field(server, tmp_path):
    before = samples(scrape(server))
    store = ArtifactStore(tmp_path / "runs")
    log = RunEventLog(store, RunContext(work_order_id="wo_metrics0002", run_id="r"), iteration=2)
    log.emit("phase_started", phase="snapshot")
    log.emit("phase_completed", phase="snapshot", commit="abc")
    after = samples(scrape(server))
    key = ("agentgate_phase_duration_seconds_count", (("phase", "snapshot"),))
    assert after[key] - before.get(key, 0) == 1


def test_gauges_can_be_set_from_visibility(server):
    metrics.set_run_gauges(active=3, queued=5)
    after = samples(scrape(server))
    assert after[("agentgate_runs_queued", ())] == 5
    assert after[("agentgate_runs_active", ())] == 3
    metrics.set_run_gauges(active=0, queued=0)


async def test_fastapi_mount_serves_metrics_at_exact_path(tmp_path):
    app = FastAPI()
    metrics.mount_metrics(app)
    emit_one_run(tmp_path, "run-metrics-api")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        resp = await client.get("/metrics", follow_redirects=False)
    assert resp.status_code == 200
    names = {f.name for f in text_string_to_metric_families(resp.text)}
    assert set(REQUIRED) <= names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package `prometheus`)")
def test_promtool_accepts_the_exposition(server, tmp_path):
    emit_one_run(tmp_path, "run-metrics-promtool")
    text = scrape(server)
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    # promtool also lints (names, units, help texts): a non-zero exit is any problem it found.
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_temporal_sdk_metrics_are_served_by_the_runtime(skip_env):
    import socket

    from temporalio.client import Client
    from temporalio.worker import Worker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = metrics.temporal_runtime(f"127.0.0.1:{port}")
    target = skip_env.client.service_client.config.target_host
    client = await Client.connect(target, namespace=skip_env.client.namespace, runtime=runtime)
    async with Worker(client, task_queue="metrics-runtime-probe", activities=[_noop]):
        await asyncio.sleep(0.5)  # let the worker poll once
        text = scrape(f"http://127.0.0.1:{port}/metrics")
    names = {f.name for f in text_string_to_metric_families(text)}
    assert any(n.startswith("temporal_") for n in names), sorted(names)[:20]


from temporalio import activity  # noqa: E402 - kept next to its only user


@activity.defn
async def _noop() -> None:
    return None
