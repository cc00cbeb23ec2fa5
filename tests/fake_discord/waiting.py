"""Waiting for the fake's state (or the bot's) to change."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable


class Signal:
    """Wake every waiter when something changes; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, predicate: Callable[[], Any], timeout: float, failure: Callable[[], str]) -> Any:
        """The predicate's first truthy value; re-checked on every change and every 50 ms (it may
        look at state outside the fake, such as the bot's), AssertionError(failure()) on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(failure())
            event = self._event
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))
