"""`agentgate worker` as its own OS process, as on a real host: the one helper of the tests that kill workers.

tests/test_worker_loss.py (kill -9 during a build), tests/test_scale_out.py (two hosts, one lost) and
tests/test_chaos.py (the Temporal server restarted under a worker) start workers this way, so that a
SIGKILL really is the loss of a process with its own memory, slots and children. Every worker is
stopped by its own PID (SIGTERM, then SIGKILL after a grace), never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agentgate.config import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment without any AGENTGATE_* variable, then what `settings` says, test-fast.

    Heartbeats every second, a 2 s grace for agents and for the worker's own shutdown, and a metrics
    port of its own (two workers on one machine must not fight over one). `extra` wins over all of it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AGENTGATE_HOME=str(settings.home),
        AGENTGATE_TEMPORAL_ADDRESS=settings.temporal_address,
        AGENTGATE_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        AGENTGATE_TASK_QUEUE=settings.task_queue,
        AGENTGATE_HOST_ID=settings.host_id,
        AGENTGATE_HEARTBEAT_SECONDS="1",
        AGENTGATE_AGENT_GRACE_SECONDS="2",
        AGENTGATE_WORKER_GRACEFUL_SHUTDOWN_SECONDS="2",
        AGENTGATE_METRICS_PORT=str(free_port()),
    )
    if settings.artifact_dir is not None:  # a shared artifact store (several hosts)
        env["AGENTGATE_ARTIFACT_DIR"] = str(settings.artifact_dir)
    env.update(extra)
    return env


class WorkerProcess:
    """One `python -m agentgate.cli worker` with its output in `log`; started at once unless `start=False`."""

    def __init__(self, settings: Settings, log: Path, *, start: bool = True, **extra_env: str) -> None:
        self.settings = settings
        self.log_path = Path(log)
        self.env = worker_env(settings, **extra_env)
        self.proc: subprocess.Popen | None = None
        self._log = None
        if start:
            self.start()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()/kill9()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentgate.cli", "worker"],
            env=self.env,
            cwd=self.log_path.parent,  # never the checkout: nothing a worker writes lands in the repository
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        """The end of the worker's output, for assertion messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill9(self) -> None:
        """SIGKILL: no shutdown of any kind, as when a host dies."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (the worker's graceful shutdown), SIGKILL if it has not ended after `timeout` s."""
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
