"""Joining the global queue at submit time, robust to a burst of submissions.

The API enqueues each new run with an update-with-start on the one admission workflow, so the
201 carries the order's position. Temporal limits the updates in flight per workflow
(`history.maxInFlightUpdates`, 10 by default): under a burst the server refuses the excess
with RESOURCE_EXHAUSTED, the SDK retries with its own growing backoff, and a single call can
outlast the whole time budget. Then the position used to be answered as "not known".

Both ways into the queue are the same idempotent request (work order, run, ticket 1): the run's
own first step signals it too (activities/admission.py), and signals are not limited like
updates. So here a refused or slow update is retried in short attempts with jittered backoff,
and between attempts the `position` query is asked: as soon as either way has landed, the
answer is the order's real standing. Only when neither lands within the budget (no worker
polls, Temporal is down) is the position unknown (None); the run still queues itself.
"""

from __future__ import annotations

import asyncio
import logging
import random

from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from agentgate import queue
from agentgate.config import Settings
from agentgate.models import WorkOrder
from workflows.admission import QueueStanding

log = logging.getLogger("agentgate.queue")

ENQUEUE_TIMEOUT = 8.0  # the whole budget of one submission's enqueue (update attempts and standing reads)
ATTEMPT_TIMEOUT = 1.5  # one update attempt; the SDK's own retries of a refusal happen inside it
QUERY_TIMEOUT = 1.0  # one standing read between attempts
FIRST_BACKOFF, MAX_BACKOFF = 0.05, 0.8

# Refusals that pass: the in-flight update limit, an update aborted by the queue's continue-as-new,
# an overloaded frontend. Anything else is not retried (but the standing is still read once).
TRANSIENT = frozenset({RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


def is_transient(exc: BaseException) -> bool:
    """A failure worth another attempt: a refusal that passes, or an attempt that ran out of time."""
    if isinstance(exc, RPCError):
        return exc.status in TRANSIENT
    return isinstance(exc, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError)


async def read_standing(client: Client, settings: Settings, work_order_id: str, timeout: float) -> QueueStanding | None:
    """The order's standing if it is in the queue (waiting or holding a slot), else None; never raises."""
    if timeout <= 0:
        return None
    try:
        found = await asyncio.wait_for(queue.standing(client, settings, work_order_id), timeout)
    except (TimeoutError, RPCError, queue.QueueUnavailable):
        return None
    return found if found.state in ("waiting", "admitted") else None


async def enqueue_or_standing(
    client: Client,
    settings: Settings,
    order: WorkOrder,
    run_id: str,
    *,
    budget: float = ENQUEUE_TIMEOUT,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
) -> QueueStanding | None:
    """Enqueue `run_id` and answer its standing; retries refusals and reads the standing in between.

    Returns None only when, within `budget` seconds, no attempt was answered and the run's own
    enqueue had not landed either."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    backoff, attempts = FIRST_BACKOFF, 0
    last: BaseException | None = None
    while (remaining := deadline - loop.time()) > 0:
        attempts += 1
        try:
            return await queue.enqueue(client, settings, order, run_id, timeout=min(remaining, attempt_timeout))
        except (TimeoutError, RPCError, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
            last = exc
        found = await read_standing(client, settings, order.id, min(deadline - loop.time(), QUERY_TIMEOUT))
        if found is not None:
            log.info("work order %s: enqueue attempt %d failed (%s); read its standing instead", order.id,
                     attempts, _describe(last))  # fmt: skip
            return found
        if not is_transient(last):
            break
        log.info("work order %s: enqueue attempt %d failed (%s); retrying", order.id, attempts, _describe(last))
        # Full jitter: a burst of refused callers must not come back in lockstep.
        await asyncio.sleep(max(0.0, min(random.uniform(0, backoff), deadline - loop.time())))
        backoff = min(backoff * 2, MAX_BACKOFF)
    log.warning("work order %s: position not known yet after %d enqueue attempts: %s", order.id, attempts,
                _describe(last))  # fmt: skip
    return None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, RPCError):
        return f"{exc.status.name if exc.status else 'RPC error'}: {exc.message}"
    if exc is None:
        return "no attempt"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
