"""The global admission queue: one long-lived workflow owns the capacity, the waiting orders and the slot holders.

Why a workflow (see docs/architecture.md, "The queue"): Temporal's task-queue priority orders
tasks, but it cannot say where a task stands, its capacity is the sum of worker slots (a
restart to change it), and a task cannot be taken out of a backlog. This workflow keeps the
queue as workflow state instead, so that

- a position is computed by running the grant policy itself on the current state
  (`admission_order`), so it predicts the start order exactly;
- the capacity is one number, changeable at run time by an update;
- a canceled order leaves at once (the `withdraw` signal removes its entry);
- fairness keys are served round-robin inside a priority, so one caller cannot starve others.

Everything stays in Temporal: the state survives worker and API restarts and is carried
over continue-as-new. A run that closes without releasing its slot (terminated, killed) is
found by a periodic reconcile (only while the queue is non-empty) and by the failed
`admitted` signal, so no slot leaks forever.

Deterministic code only; the pure functions at the top are also used by the API and the tests.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

ADMISSION_PATCH = "admission-v1"
ADMITTED_SIGNAL = "admitted"
MAX_CAPACITY = 10_000
HOLD_SAMPLES = 50  # hold durations kept for the average (the wait estimate)
RECENT_DONE = 1000  # keys of released entries kept, so a late duplicate enqueue is not re-admitted
SERVED_KEYS = 1000  # fairness keys whose last grant is remembered
RECONCILE_BATCH = 200  # runs described per reconcile round


def admission_workflow_id(task_queue: str) -> str:
    """One admission workflow per deployment (= per shared task queue): `agentgate-admission` by default."""
    return f"{task_queue}-admission"


# ---------------------------------------------------------------------------
# State and messages
# ---------------------------------------------------------------------------


class QueueEntry(BaseModel):
    """One request for a slot: a run of a work order (a CI-fix round asks again with the next ticket)."""

    work_order_id: str
    run_id: str
    ticket: int = 1
    priority: int = 3
    fairness_key: str | None = None
    seq: int = 0
    enqueued_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.work_order_id}/{self.run_id}/{self.ticket}"

    @property
    def fairness(self) -> str:
        """Orders without a key share the empty key (as in Temporal's own fairness)."""
        return self.fairness_key or ""


class Holder(BaseModel):
    entry: QueueEntry
    admitted_at: datetime
    grant: int


class AdmissionState(BaseModel):
    """Everything the queue knows; the workflow's input, carried over continue-as-new."""

    capacity: int = Field(default=2, ge=1, le=MAX_CAPACITY)
    waiting: list[QueueEntry] = Field(default_factory=list)
    holders: list[Holder] = Field(default_factory=list)
    next_seq: int = 1
    grants: int = 0
    served: dict[str, int] = Field(default_factory=dict, description="fairness key -> number of its last grant")
    hold_seconds: list[float] = Field(default_factory=list, description="recent hold durations (newest last)")
    recent_done: list[str] = Field(default_factory=list, description="keys of entries that left (bounded)")
    reconcile_seconds: float = Field(default=30.0, gt=0)
    max_history_events: int = Field(default=4000, ge=20, description="continue-as-new beyond this history length")
    released: int = 0
    reconciled: int = 0
    generation: int = 1


class EnqueueRequest(BaseModel):
    work_order_id: str = Field(min_length=1, max_length=200)
    run_id: str = Field(min_length=1, max_length=200)
    ticket: int = Field(default=1, ge=1)
    priority: int = Field(default=3, ge=1, le=5)
    fairness_key: str | None = Field(default=None, max_length=200)


class LeaveRequest(BaseModel):
    """Withdraw a waiting entry or release a held slot (both remove whatever matches)."""

    work_order_id: str
    run_id: str | None = Field(default=None, description="None: every run of the work order")
    ticket: int | None = Field(default=None, description="None: every ticket of the run")
    waiting_only: bool = Field(default=False, description="Withdraw a waiting entry but keep a held slot")
    reason: str = "released"


class SlotGrant(BaseModel):
    """Payload of the `admitted` signal sent to the work-order run."""

    ticket: int
    grant: int


class RunRef(BaseModel):
    work_order_id: str
    run_id: str


class RunRefs(BaseModel):
    runs: list[RunRef] = Field(default_factory=list)


class QueueStanding(BaseModel):
    """Where one work order stands: waiting (position >= 1), admitted (position 0) or absent (None)."""

    work_order_id: str
    run_id: str | None = None
    state: Literal["waiting", "admitted", "absent"]
    position: int | None = None
    ahead: int | None = None
    priority: int | None = None
    fairness_key: str | None = None
    enqueued_at: datetime | None = None
    admitted_at: datetime | None = None
    capacity: int
    holders_admitted_at: list[datetime] = Field(default_factory=list)
    average_hold_seconds: float | None = None


class QueueStats(BaseModel):
    capacity: int
    queued: int
    running: int
    by_priority: dict[str, int] = Field(default_factory=dict)
    oldest_enqueued_at: datetime | None = None
    average_hold_seconds: float | None = None
    grants: int = 0
    released: int = 0
    reconciled: int = 0
    fairness_keys: int = 0
    generation: int = 1


class QueueSnapshot(BaseModel):
    capacity: int
    waiting: list[QueueEntry] = Field(default_factory=list, description="in predicted admission order")
    holders: list[Holder] = Field(default_factory=list)
    average_hold_seconds: float | None = None
    grants: int = 0


# ---------------------------------------------------------------------------
# The policy (pure): priority first, FIFO within a priority, round-robin between fairness keys
# ---------------------------------------------------------------------------


def admission_order(
    waiting: Iterable[QueueEntry], served: dict[str, int], limit: int | None = None
) -> list[QueueEntry]:
    """The order in which `waiting` is admitted if nothing else arrives: the grant policy, simulated.

    The lowest priority number goes first (1 = most urgent). Inside a priority the fairness
    key served least recently goes next (never served: the key whose oldest order arrived
    first), and each key is FIFO. `served` maps a key to the number of its last grant; the
    real grant (`AdmissionWorkflow._grant`) calls this same function with `limit=1` and
    stamps the key, so a position computed here is exactly the order of admission.
    """
    buckets: dict[int, dict[str, deque[QueueEntry]]] = {}
    for entry in sorted(waiting, key=lambda e: e.seq):
        buckets.setdefault(entry.priority, {}).setdefault(entry.fairness, deque()).append(entry)
    last = dict(served)
    stamp = max(last.values(), default=0)
    order: list[QueueEntry] = []
    for priority in sorted(buckets):
        keys = buckets[priority]
        while keys:
            key = min(keys, key=lambda k: (last.get(k, -1), keys[k][0].seq))
            order.append(keys[key].popleft())
            stamp += 1
            last[key] = stamp
            if not keys[key]:
                del keys[key]
            if limit is not None and len(order) >= limit:
                return order
    return order


def estimate_wait_seconds(
    position: int | None,
    capacity: int,
    holders_admitted_at: Sequence[datetime],
    average_hold_seconds: float | None,
    now: datetime,
) -> float | None:
    """A rough wait for the order at `position`: every hold is assumed to last the average hold.

    Slots are simulated: each current holder frees its slot when its average hold is over,
    each waiter ahead takes the earliest free slot and holds it for the average. None when
    nothing has been released yet (no average) or the order is not waiting.
    """
    if position is None:
        return None
    if position == 0:
        return 0.0
    if average_hold_seconds is None:
        return None
    busy = [max(0.0, average_hold_seconds - (now - t).total_seconds()) for t in holders_admitted_at]
    heapq.heapify(busy)
    clock = start = 0.0
    for _ in range(position):
        while len(busy) >= max(1, capacity):
            clock = max(clock, heapq.heappop(busy))
        start = clock
        heapq.heappush(busy, start + average_hold_seconds)
    return round(start, 1)


def queue_stats(state: AdmissionState) -> QueueStats:
    by_priority: dict[str, int] = {}
    for entry in state.waiting:
        by_priority[str(entry.priority)] = by_priority.get(str(entry.priority), 0) + 1
    enqueued = [e.enqueued_at for e in state.waiting if e.enqueued_at is not None]
    return QueueStats(
        capacity=state.capacity,
        queued=len(state.waiting),
        running=len(state.holders),
        by_priority=dict(sorted(by_priority.items())),
        oldest_enqueued_at=min(enqueued, default=None),
        average_hold_seconds=_average(state.hold_seconds),
        grants=state.grants,
        released=state.released,
        reconciled=state.reconciled,
        fairness_keys=len({e.fairness for e in state.waiting}),
        generation=state.generation,
    )


def standing(state: AdmissionState, work_order_id: str) -> QueueStanding:
    common = {
        "work_order_id": work_order_id,
        "capacity": state.capacity,
        "holders_admitted_at": [h.admitted_at for h in state.holders],
        "average_hold_seconds": _average(state.hold_seconds),
    }
    for holder in state.holders:
        if holder.entry.work_order_id == work_order_id:
            e = holder.entry
            return QueueStanding(**common, run_id=e.run_id, state="admitted", position=0, ahead=0,
                                 priority=e.priority, fairness_key=e.fairness_key, enqueued_at=e.enqueued_at,
                                 admitted_at=holder.admitted_at)  # fmt: skip
    if any(e.work_order_id == work_order_id for e in state.waiting):
        for index, e in enumerate(admission_order(state.waiting, state.served)):
            if e.work_order_id == work_order_id:
                return QueueStanding(
                    **common, run_id=e.run_id, state="waiting", position=index + 1, ahead=index,
                    priority=e.priority, fairness_key=e.fairness_key, enqueued_at=e.enqueued_at,
                )  # fmt: skip
    return QueueStanding(**common, state="absent")


def _average(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _matches(entry: QueueEntry, req: LeaveRequest) -> bool:
    return (
        entry.work_order_id == req.work_order_id
        and (req.run_id is None or entry.run_id == req.run_id)
        and (req.ticket is None or entry.ticket == req.ticket)
    )


# ---------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------


@workflow.defn(name="AdmissionWorkflow")
class AdmissionWorkflow:
    @workflow.init
    def __init__(self, state: AdmissionState) -> None:
        # Signals and updates of the first task (signal-/update-with-start) run before `run`: the state must exist.
        self.s = state
        self._notifying = 0
        self._reconcile_now = False
        self._update_task = -1  # history length of the task that last completed an update

    @workflow.run
    async def run(self, state: AdmissionState) -> None:
        self._grant()  # a carried-over state may have free slots
        while not self._continue_as_new_due():
            busy = self._busy()
            timed_out = False
            try:
                # The reconcile timer runs only while someone waits or holds a slot: an idle queue has no timers.
                await workflow.wait_condition(
                    lambda busy=busy: self._continue_as_new_due() or self._reconcile_now or self._busy() != busy,
                    timeout=timedelta(seconds=self.s.reconcile_seconds) if busy else None,
                )
            except TimeoutError:
                timed_out = True
            wanted, self._reconcile_now = self._reconcile_now or timed_out, False
            if wanted and self._busy():
                await self._reconcile()
        for _ in range(50):  # bounded: a constant stream of updates must not postpone it forever
            await workflow.wait_condition(lambda: self._notifying == 0 and workflow.all_handlers_finished())
            if self._update_task != workflow.info().get_current_history_length():
                break
            # An update completed in this very task: continuing as new in the same task completion can
            # lose the update's answer (temporalio/temporal#6375), so let it be persisted first.
            await workflow.sleep(timedelta(milliseconds=10))
        await workflow.wait_condition(lambda: self._notifying == 0 and workflow.all_handlers_finished())
        self.s.generation += 1
        workflow.continue_as_new(self.s)

    # -- messages ---------------------------------------------------------------------
    @workflow.update(name="enqueue")
    def enqueue(self, req: EnqueueRequest) -> QueueStanding:
        """Join the queue (idempotent per work order, run and ticket); answers the position."""
        self._update_task = workflow.info().get_current_history_length()
        self._enqueue(req)
        return standing(self.s, req.work_order_id)

    @workflow.signal(name="enqueue")
    def enqueue_signal(self, req: EnqueueRequest) -> None:
        """The same as the update, for signal-with-start (the work-order workflow's own enqueue activity)."""
        self._enqueue(req)

    @workflow.signal(name="withdraw")
    def withdraw(self, req: LeaveRequest) -> None:
        self._leave(req)

    @workflow.signal(name="release")
    def release(self, req: LeaveRequest) -> None:
        self._leave(req)

    @workflow.signal(name="reconcile")
    def reconcile(self) -> None:
        """Check now (instead of at the next period) for runs that closed without releasing."""
        self._reconcile_now = True

    @workflow.update(name="set_capacity")
    def set_capacity(self, capacity: int) -> QueueStats:
        self._update_task = workflow.info().get_current_history_length()
        self.s.capacity = capacity
        self._grant()
        return queue_stats(self.s)

    @set_capacity.validator
    def _check_capacity(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be an integer from 1 to {MAX_CAPACITY}, got {capacity!r}")

    @workflow.query(name="stats")
    def stats(self) -> QueueStats:
        return queue_stats(self.s)

    @workflow.query(name="position")
    def position(self, work_order_id: str) -> QueueStanding:
        return standing(self.s, work_order_id)

    @workflow.query(name="snapshot")
    def snapshot(self) -> QueueSnapshot:
        return QueueSnapshot(
            capacity=self.s.capacity,
            waiting=admission_order(self.s.waiting, self.s.served),
            holders=list(self.s.holders),
            average_hold_seconds=_average(self.s.hold_seconds),
            grants=self.s.grants,
        )

    # -- state changes ----------------------------------------------------------------
    def _enqueue(self, req: EnqueueRequest) -> None:
        key = f"{req.work_order_id}/{req.run_id}/{req.ticket}"
        if key in self.s.recent_done:  # a late duplicate of an entry that already left
            return
        if any(e.key == key for e in self.s.waiting) or any(h.entry.key == key for h in self.s.holders):
            return
        self.s.waiting.append(
            QueueEntry(**req.model_dump(), seq=self.s.next_seq, enqueued_at=workflow.now())  # type: ignore[arg-type]
        )
        self.s.next_seq += 1
        self._grant()

    def _leave(self, req: LeaveRequest) -> None:
        self._remove(req)
        self._grant()

    def _remove(self, req: LeaveRequest, *, reconciled: bool = False) -> int:
        now = workflow.now()
        gone = [] if req.waiting_only else [h for h in self.s.holders if _matches(h.entry, req)]
        left = [e for e in self.s.waiting if _matches(e, req)]
        if not gone and not left:
            return 0
        self.s.holders = [h for h in self.s.holders if req.waiting_only or not _matches(h.entry, req)]
        self.s.waiting = [e for e in self.s.waiting if not _matches(e, req)]
        for holder in gone:
            if not reconciled:  # a reconciled hold ended at an unknown time: it would skew the average
                self.s.hold_seconds.append(max(0.0, (now - holder.admitted_at).total_seconds()))
            self.s.released += 1
        if reconciled:
            self.s.reconciled += len(gone) + len(left)
        del self.s.hold_seconds[:-HOLD_SAMPLES]
        self.s.recent_done.extend(e.key for e in [*left, *(h.entry for h in gone)])
        del self.s.recent_done[:-RECENT_DONE]
        return len(gone) + len(left)

    def _grant(self) -> None:
        """Fill free slots in policy order; each admitted run is told by its `admitted` signal."""
        while len(self.s.holders) < self.s.capacity and self.s.waiting:
            [entry] = admission_order(self.s.waiting, self.s.served, limit=1)
            self.s.waiting = [e for e in self.s.waiting if e.key != entry.key]
            self.s.grants += 1
            self.s.served[entry.fairness] = self.s.grants
            holder = Holder(entry=entry, admitted_at=workflow.now(), grant=self.s.grants)
            self.s.holders.append(holder)
            self._notifying += 1
            asyncio.ensure_future(self._notify(holder))
        self._forget_old_keys()

    def _forget_old_keys(self) -> None:
        if len(self.s.served) <= SERVED_KEYS:
            return
        waiting_keys = {e.fairness for e in self.s.waiting}
        # Only keys with nothing waiting: the order of the waiting ones must not change.
        idle = sorted((stamp, key) for key, stamp in self.s.served.items() if key not in waiting_keys)
        for _, key in idle[: len(self.s.served) - SERVED_KEYS]:
            del self.s.served[key]

    async def _notify(self, holder: Holder) -> None:
        entry = holder.entry
        try:
            handle = workflow.get_external_workflow_handle(entry.work_order_id, run_id=entry.run_id)
            await handle.signal(ADMITTED_SIGNAL, SlotGrant(ticket=entry.ticket, grant=holder.grant))
        except Exception as exc:  # noqa: BLE001 - the run is closed or gone: its slot goes to the next
            workflow.logger.info("admission: %s cannot take its slot (%s); granting the next", entry.key, exc)
            req = LeaveRequest(work_order_id=entry.work_order_id, run_id=entry.run_id, ticket=entry.ticket)
            self._remove(req, reconciled=True)
            self._grant()
        finally:
            self._notifying -= 1

    async def _reconcile(self) -> None:
        """Drop the entries of runs that closed without releasing (terminated, killed, purged)."""
        refs: list[RunRef] = []
        seen: set[tuple[str, str]] = set()
        for entry in [*(h.entry for h in self.s.holders), *self.s.waiting]:
            if (entry.work_order_id, entry.run_id) not in seen:
                seen.add((entry.work_order_id, entry.run_id))
                refs.append(RunRef(work_order_id=entry.work_order_id, run_id=entry.run_id))
        try:
            closed = await workflow.execute_activity(
                "admission_closed_runs",
                RunRefs(runs=refs[:RECONCILE_BATCH]),
                result_type=RunRefs,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)),
            )
        except ActivityError as err:
            workflow.logger.warning("admission: reconcile failed, next try in %s s: %s", self.s.reconcile_seconds, err)
            return
        for ref in closed.runs:
            self._remove(LeaveRequest(work_order_id=ref.work_order_id, run_id=ref.run_id), reconciled=True)
        self._grant()

    def _busy(self) -> bool:
        return bool(self.s.waiting or self.s.holders)

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self.s.max_history_events
