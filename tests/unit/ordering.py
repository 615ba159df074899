"""Ordering concurrent steps in unit tests by what has happened, not by how long it took.

Every fake here completes without real I/O, so a step that is due happens within a few turns of the event
loop. ``until`` waits for a condition a bounded number of turns; ``settle`` gives whatever is already
scheduled its turns before a test checks that something did *not* happen. Neither depends on wall time,
so a slow, shared machine cannot reorder them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

TURNS = 1000


async def until(condition: Callable[[], bool], what: str, *, turns: int = TURNS) -> None:
    """Yield to the loop until ``condition()`` holds; fail the test if it still does not after ``turns``."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still waiting after {turns} loop turns for: {what}")


async def settle(turns: int = 20) -> None:
    """Let every task and callback already scheduled run (a fixed number of loop turns, no wall time)."""
    for _ in range(turns):
        await asyncio.sleep(0)
