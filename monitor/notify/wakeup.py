"""The one wait the delivery loops share: until there is news, a stop, or a deadline."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_news(news: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Until `news` or `stop` is set, or `seconds` have passed; clears `news` first,
    so only what happens from now on wakes the caller."""
    news.clear()
    waiter = asyncio.ensure_future(news.wait())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=seconds,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
