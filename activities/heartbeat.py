"""A steady heartbeat for activities whose work does not report progress by itself (clones, restores).

Without one, such an activity can only be given a long start-to-close timeout, and a worker killed in
the middle of it is noticed only when that timeout ends (half an hour for a clone). With a heartbeat
and the workflow's heartbeat timeout, Temporal notices the lost worker within half a minute and retries the
attempt on any other worker; cancellation reaches the activity through the same heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(interval: float, detail: str) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat(detail)
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def heartbeats(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Decorate an activity method (of a class with `deps.settings`) so it heartbeats while it runs."""

    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        async with heartbeating(self.deps.settings.heartbeat_seconds, fn.__name__):
            return await fn(self, *args, **kwargs)

    return wrapper
