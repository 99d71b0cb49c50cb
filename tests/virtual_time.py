"""Virtual time for tests: an event loop whose clock jumps to the next timer when idle.

`run_virtual` runs a coroutine on a `VirtualTimeLoop`: the loop's ``time()`` only moves
when every task is waiting for a timer, and then jumps straight to that timer, so a
5-second period or a day-long quota costs nothing and timings are exact. Whatever waits
must read the loop's clock (`now`, or ``asyncio.get_running_loop().time``) and sleep with
``asyncio.sleep``; inject them where the code under test takes ``clock`` and ``sleep``.

Real sockets still work on this loop (the selector polls them without blocking), but a
test whose subject is real sockets or processes should run in real time instead.

`virtual` turns an ``async def`` test into a plain one that runs on its own virtual loop::

    @virtual
    async def test_pause_waits_a_period() -> None:
        ...
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ["VirtualTimeLoop", "now", "run_virtual", "virtual"]

T = TypeVar("T")
P = ParamSpec("P")


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: polls the real descriptors, then advances virtual time by the timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("deadlock: every task is waiting and no timer is scheduled")
        self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is virtual and jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` in virtual time; fail if it leaves a task behind."""
    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(main())
        leftover = asyncio.all_tasks(loop)
        assert not leftover, f"tasks left running: {leftover}"
        return result
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def virtual(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an ``async def`` test on its own `VirtualTimeLoop` (pytest fixtures still apply,
    as long as they are not async: those would run on another loop)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        run_virtual(lambda: test(*args, **kwargs))

    return run


def now() -> float:
    """The running loop's clock: virtual on a `VirtualTimeLoop`."""
    return asyncio.get_running_loop().time()
