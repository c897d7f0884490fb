"""The AgentGate worker: hosts the work-order workflow and every phase activity.

It polls two task queues: the shared one (workflows, and activities that may run
anywhere) and this host's own queue, where activities bound to a workspace on this
host's disk are scheduled (the prepare step returns that queue's name).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.admission import AdmissionActivities
from activities.build import BuildActivities
from activities.delivery import delivery_activities
from activities.deps import ActivityDeps
from activities.records import RecordActivities
from activities.verify import VerifyActivities
from activities.workspace import WorkspaceActivities
from agentgate import reaper, storage_check
from agentgate.config import Settings, get_settings
from agentgate.observability.metrics import start_metrics_server
from agentgate.observability.tracing import shutdown_tracing, temporal_interceptors
from agentgate.process import become_subreaper
from agentgate.queue import ensure_admission
from agentgate.temporal_client import connect
from workflows.admission import AdmissionWorkflow
from workflows.work_order import WorkOrderWorkflow

log = logging.getLogger("agentgate.worker")


# Every workflow type a worker hosts; tests and the replayer use the same list.
WORKFLOWS = [WorkOrderWorkflow, AdmissionWorkflow]


def admission_activities(deps: ActivityDeps) -> list:
    admission = AdmissionActivities(deps)
    return [admission.enqueue, admission.closed_runs]


def activity_functions(deps: ActivityDeps) -> list:
    workspace, build = WorkspaceActivities(deps), BuildActivities(deps)
    verify, records = VerifyActivities(deps), RecordActivities(deps)
    return [
        workspace.prepare_workspace,
        workspace.snapshot,
        workspace.deliver_local,
        workspace.restore_workspace,
        workspace.probe_workspace,
        build.run_agent,
        verify.verify,
        verify.feedback,
        records.record_run_started,
        records.record_iteration,
        records.finalize_run,
        *admission_activities(deps),
        *delivery_activities(deps),
    ]


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    deps = ActivityDeps.from_settings(settings)
    acts = activity_functions(deps)
    # Cancellation reaches an activity only through a heartbeat response, and the SDK
    # throttles heartbeats to 80% of the heartbeat timeout by default: cap it so that
    # "stop" stops within seconds, not a minute.
    throttle = timedelta(seconds=max(1.0, settings.heartbeat_seconds))
    # On shutdown, running activities get this long to finish before they are cancelled
    # (and their process trees stopped); the workflow then retries them elsewhere.
    grace = timedelta(seconds=settings.worker_graceful_shutdown_seconds)
    shared = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=acts,
        activity_executor=ThreadPoolExecutor(4),
        max_concurrent_activities=4,
        max_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=grace,
    )
    host = Worker(
        client,
        task_queue=settings.host_task_queue,
        activities=acts,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=grace,
    )
    agents = Worker(
        client,
        task_queue=settings.agent_task_queue,
        activities=acts,
        max_concurrent_activities=settings.max_concurrent_agents,
        max_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=grace,
    )
    return [shared, host, agents]


async def run_worker(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    settings = settings or get_settings()
    become_subreaper()
    # Before polling: a retried attempt must not share its workspace with a dead worker's leftovers.
    await asyncio.to_thread(reaper.startup, settings)
    metrics_server = None
    try:
        metrics_server, _ = start_metrics_server(settings.metrics_host, settings.metrics_port)
    except OSError as exc:  # a taken port must not keep the worker from working; it is reported
        log.error("worker metrics not served on %s:%s: %s", settings.metrics_host, settings.metrics_port, exc)
    client = await connect(settings, interceptors=temporal_interceptors("agentgate-worker"))
    workers = build_workers(client, settings)
    log.info("worker polling %s", ", ".join(w.task_queue for w in workers))
    try:  # so that queue health sees the queue before the first order (the first order would start it too)
        await ensure_admission(client, settings)
    except Exception as exc:  # noqa: BLE001 - Temporal may come up later; the first order starts the queue
        log.warning("could not start the admission queue workflow yet: %s", exc)
    async with workers[0], workers[1], workers[2], storage_check.in_background(settings, "worker"):
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
            shutdown_tracing()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker())
