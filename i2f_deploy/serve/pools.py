"""Threads of their own for slow work that waits on others (fetching Label Studio's task images).

FastAPI runs every plain (``def``) route in one shared pool of 40 threads. A request that fetches
a task image can wait up to ``--fetch-timeout`` on a slow or hostile server; forty of those would
hold every thread, and uploads, clicks and ``/health`` would wait behind them. A ``WorkPool``
runs such calls on threads of its own, at most ``slots`` at once; a call that finds them all busy
waits at most ``wait_s`` for one, then gets 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from i2f_deploy.serve.budget import Busy

T = TypeVar("T")


class WorkPool:
    """At most ``slots`` calls at once on their own threads, in the server's event loop."""

    def __init__(self, name: str, slots: int, wait_s: float) -> None:
        self.name = name
        self.slots = slots
        self.wait_s = wait_s
        self._gate = anyio.Semaphore(slots)
        self._threads = anyio.CapacityLimiter(slots)  # not the shared default limiter

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on one of the pool's threads; ``Busy`` if no slot frees up in time."""
        with anyio.move_on_after(self.wait_s) as waiting:
            await self._gate.acquire()
        if waiting.cancelled_caught:
            raise Busy(f"all {self.slots} slots for {self.name} stayed busy for {self.wait_s:g} s; try again shortly")
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._threads)
        finally:
            self._gate.release()
