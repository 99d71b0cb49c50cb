"""The one session of a `leadsquared_account` run, and how its resources' walks end together.

dlt runs each resource's async generator in an event loop of its own, one ``__anext__`` a
task. When a resource raises, dlt cancels the tasks in flight and at once closes every async
generator of the loop (``shutdown_asyncgens``), concurrently with what the cancelled tasks
still have to do. A walk that is unwinding then (closing its pages, its share of the session)
is closed a second time under itself: asyncio logs "aclose(): asynchronous generator is
already running" with tracebacks, and the session's connections are left open.

So a walk that fails does not hand its error to dlt at once: it first stops the others (the
one asking for a page is cancelled, and waited for; one between two pages is closed), which
closes the session with the last of them, and raises only then. What dlt closes afterwards
has nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .account_work import SyncWork

if TYPE_CHECKING:
    from leadsq_async import Session

__all__ = ["SharedSession", "SyncProgress"]


class SyncProgress(Protocol):
    """What a sync reports as it goes, for a display (the command line's). Called from dlt's
    extraction thread; an exception it raises stops the sync (nothing of it is committed)."""

    def sync_started(self, session: Session, work: SyncWork) -> None:
        """The sync's session is open; its ``stats``, ``limiter`` and ``events`` can be
        watched, and ``work`` tells the requests it still needs, as far as known."""


class _Walk:
    """One resource's walk: the generator, and the task asking it for an item, if any."""

    def __init__(self, items: AsyncGenerator[Any, None]) -> None:
        self.items = items
        self.asking: asyncio.Task[Any] | None = None


class SharedSession:
    """One session for every resource of a run, so that they share one limiter: opened by
    the first resource that needs it (in dlt's event loop), closed when the last is done.
    Its walks are counted in ``work``; a walk that fails stops the others first (`walk`)."""

    def __init__(self, open_session: Callable[[], Any], progress: SyncProgress | None) -> None:
        self._open = open_session
        self._progress = progress
        self.work = SyncWork()
        self._users = 0
        self._stack: contextlib.AsyncExitStack | None = None
        self._session: Session | None = None
        self._walks: list[_Walk] = []
        self._failed = False
        self._stopped: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Session]:
        """The run's session, opened by the first user and closed by the last."""
        self._users += 1
        try:
            session = self._session
            if session is None:
                stack = contextlib.AsyncExitStack()
                opened: Session = await stack.enter_async_context(self._open())
                session = self._session = opened
                self._stack = stack
                if self._progress is not None:
                    self._progress.sync_started(session, self.work)
            yield session
        finally:
            self._users -= 1
            if self._users == 0 and self._stack is not None:
                stack, self._stack, self._session = self._stack, None, None
                await stack.aclose()

    async def walk(
        self, items: AsyncGenerator[Any, None], ended: Callable[[], None] | None = None
    ) -> AsyncIterator[Any]:
        """``items``, as a resource of the run yields them, and ``ended`` called once they
        have all come. If they fail, every other walk of the run is stopped, and the session
        closed, before the error goes on to dlt; once one has failed, the others yield
        nothing more."""
        walk = _Walk(items)
        self._walks.append(walk)
        try:
            while not self._failed:
                walk.asking = asyncio.current_task()
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    if ended is not None:
                        ended()
                    return
                except Exception:
                    walk.asking = None
                    await self._stop_others(walk)
                    raise
                finally:
                    walk.asking = None
                yield item
        finally:
            self._walks.remove(walk)

    async def _stop_others(self, failed: _Walk) -> None:
        if self._failed:  # another walk failed first: it is stopping them all
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._failed = True
        self._stopped = asyncio.Event()
        try:
            others = [walk for walk in self._walks if walk is not failed]
            asking = [walk.asking for walk in others if walk.asking is not None]
            for task in asking:
                task.cancel()
            if asking:
                await asyncio.wait(asking)
            for walk in others:
                await walk.items.aclose()  # between two items: nothing runs it
        finally:
            self._stopped.set()
