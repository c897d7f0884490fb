"""What every benchmark module shares: percentiles, a git repository, and the stack under test.

The stack is the embedded one taken apart so that each part can be measured: the Temporal dev
server (SQLite file with the embedded stack's pragmas and dynamic config, started through the
SDK's `WorkflowEnvironment.start_local`), `agentgate worker` and `agentgate api` as their own
OS processes (so the worker's RSS is its own, and the benchmark's client does not share an event
loop with the API). Every process started here is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from agentgate import search_attributes as sa
from agentgate.config import Settings
from agentgate.embedded import temporal_binary, temporal_command

ROOT = Path(__file__).resolve().parents[1]


# -- numbers ------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (no interpolation: every reported value was really observed)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def percentiles(values: list[float], prefix: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    """{prefix_p50: …, prefix_p95: …} for the given quantiles, plus the sample count."""
    out: dict[str, float] = {f"{prefix}_n": len(values)}
    for q in qs:
        out[f"{prefix}_p{int(q * 100)}"] = round(pct(values, q), 3) if values else float("nan")
    return out


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 2) if baseline else float("nan")


def machine() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "README").write_text("bench\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@localhost", "-C", str(path), "commit", "-qm", "init"],
        check=True,
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident set size of one process (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def order_body(repo: Path, agent: str, gate: str = "true", **extra: Any) -> dict[str, Any]:
    return {
        "task_prompt": "bench",
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": agent},
        "gates": [gate],
        "max_iterations": 1,
        **extra,
    }


# -- the Temporal server ------------------------------------------------------------------------------


def _server_flags() -> list[str]:
    """The embedded stack's SQLite pragmas and dynamic config (partitions, fairness, ack intervals)."""
    argv = temporal_command(Settings())
    flags: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("--sqlite-pragma", "--dynamic-config-value"):
            flags += [arg, argv[i + 1]]
    return flags


async def start_temporal(db: Path) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_database_filename=str(db),
        dev_server_extra_args=_server_flags(),
    )


# -- worker and API processes ------------------------------------------------------------------------


class Service:
    """`agentgate worker` or `agentgate api` as its own process; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentgate.cli", command],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 20) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
        self._log.close()


class Stack:
    """Temporal + one worker process + one API process, on a fresh AGENTGATE_HOME under `tmp`."""

    def __init__(self, env: WorkflowEnvironment, tmp: Path, *, max_agents: int = 8, capacity: int = 1) -> None:
        self.env = env
        self.tmp = tmp
        self.port = free_port()
        self.settings = Settings(
            home=tmp / "home",
            temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-{uuid.uuid4().hex[:6]}",
            host_id="bench",
            api_host="127.0.0.1",
            api_port=self.port,
            max_concurrent_agents=max_agents,
            capacity=capacity,
        )
        self.worker: Service | None = None
        self.api: Service | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
        env.update(
            PYTHONPATH=str(ROOT),
            AGENTGATE_HOME=str(s.home),
            AGENTGATE_TEMPORAL_ADDRESS=s.temporal_address,
            AGENTGATE_TASK_QUEUE=s.task_queue,
            AGENTGATE_HOST_ID=s.host_id,
            AGENTGATE_API_HOST=s.api_host,
            AGENTGATE_API_PORT=str(s.api_port),
            AGENTGATE_MAX_CONCURRENT_AGENTS=str(s.max_concurrent_agents),
            AGENTGATE_MAX_CONCURRENT_ACTIVITIES=str(max(20, 2 * s.max_concurrent_agents)),
            AGENTGATE_CAPACITY=str(s.capacity),
            AGENTGATE_METRICS_PORT=str(free_port()),
            AGENTGATE_WORKER_GRACEFUL_SHUTDOWN_SECONDS="2",
            AGENTGATE_AGENT_GRACE_SECONDS="2",
            AGENTGATE_LOG_LEVEL="WARNING",
        )
        return env

    async def __aenter__(self) -> Stack:
        self.settings.home_dir.mkdir(parents=True, exist_ok=True)
        self.worker = Service("worker", self._env(), self.tmp / "worker.log")
        self.api = Service("api", self._env(), self.tmp / "api.log")
        await self._wait_ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for svc in (self.api, self.worker):
            if svc is not None:
                svc.stop()

    async def _wait_ready(self, timeout: float = 120) -> None:
        """The API answers and the worker polls the shared task queue (readiness reports its pollers)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            while time.monotonic() < deadline:
                for svc in (self.worker, self.api):
                    assert svc is not None
                    if not svc.alive():
                        raise RuntimeError(f"{svc.log_path.name} exited:\n{svc.log_path.read_text()[-3000:]}")
                try:
                    ready = (await http.get("/health/ready")).json()
                    if ready.get("checks", {}).get("worker_polling", {}).get("ok"):
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"the stack was not ready within {timeout:g} s (see {self.tmp}/*.log)")

    def http(self, **kw: Any) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        return httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(120), limits=limits, **kw)

    async def set_capacity(self, http: httpx.AsyncClient, capacity: int) -> None:
        answer = await http.put("/api/v1/queue/capacity", json={"capacity": capacity})
        answer.raise_for_status()

    async def submit(self, http: httpx.AsyncClient, body: dict[str, Any]) -> str:
        answer = await http.post("/api/v1/work-orders", json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"submit failed: {answer.status_code} {answer.text}")
        return answer.json()["id"]

    async def wait_done(self, wo_id: str) -> Any:
        """The run's outcome, from Temporal (a long poll: no polling of the API)."""
        from workflows.work_order import WorkOrderWorkflow

        return await self.env.client.get_workflow_handle_for(WorkOrderWorkflow.run, wo_id).result()


async def submit_many(stack: Stack, http: httpx.AsyncClient, bodies: list[dict[str, Any]], parallel: int = 16):
    """POST every body, `parallel` at a time (a burst from many clients); the ids in body order."""
    gate = asyncio.Semaphore(parallel)

    async def one(body: dict[str, Any]) -> str:
        async with gate:
            return await stack.submit(http, body)

    return await asyncio.gather(*(one(b) for b in bodies))
