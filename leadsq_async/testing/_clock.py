"""The emulator's one clock: monotonic time is the serving event loop's (virtual under
``looptime``), and its wall time, which a change stamps on ``ModifiedOn``, is the real UTC time
read when the clock was made plus the monotonic time elapsed since (see ``EmulatorClock``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class EmulatorClock:
    """Monotonic and wall time for one emulator, safe to read from any thread.

    Monotonic time (rate-limit windows, index lag) is ``loop.time()`` of the loop that serves
    the app, so on a virtual-time loop (the ``looptime`` pytest plugin) a day costs nothing.
    Wall time (``now``) is the real UTC time read once when the clock is made, plus the
    monotonic time elapsed since: it moves with the loop, virtual or real. Before a loop serves
    the app, the clock reads the running loop of the calling thread, or ``time.monotonic`` when
    there is none. When the serving loop changes, the time carries on from where it was, so it
    never goes back, by a whole number of seconds (which keeps times that differ by an exact
    period exactly that far apart); until the clock is first read, it is simply the new loop's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offset = 0.0  # added to the source's reading
        self._read = False  # whether a reading was handed out
        self._loop = _running_loop()
        self._last = self._source()
        self._wall_anchor = time.time() - self._last

    def serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ``loop``'s time from now on (called by the app for the loop that serves it)."""
        with self._lock:
            if loop is not self._loop:
                self._rebase(loop)

    def _source(self) -> float:
        loop = self._loop
        return time.monotonic() if loop is None else loop.time()

    def _rebase(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Read ``loop`` (None: ``time.monotonic``) from now on, carrying on from the time read
        last, so that the clock never goes back."""
        if not self._read:
            self._loop = loop
            self._offset = 0.0
            self._last = self._source()
            self._wall_anchor = time.time() - self._last
            return
        carried = max(self._last, self._source() + self._offset)
        self._loop = loop
        self._offset = float(math.ceil(carried - self._source()))
        self._last = carried

    def _read_locked(self) -> float:
        loop = self._loop
        if loop is None or loop.is_closed():
            # No loop serves the app (yet, or any more): the calling thread's, if it runs one.
            running = _running_loop()
            if running is not None and running is not loop:
                self._rebase(running)
            elif running is None and loop is not None:
                self._rebase(None)
        self._last = max(self._last, self._source() + self._offset)
        self._read = True
        return self._last

    def monotonic(self) -> float:
        """Seconds on the emulator's monotonic clock: the serving loop's time."""
        with self._lock:
            return self._read_locked()

    def wall(self) -> float:
        """The emulator's now as UTC epoch seconds: moves with ``monotonic``."""
        with self._lock:
            reading = self._read_locked()  # first: it may set the anchor
            return self._wall_anchor + reading

    def now(self) -> dt.datetime:
        """The emulator's now, an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.wall(), dt.timezone.utc)
