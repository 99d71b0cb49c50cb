"""What the emulator saw: counters a test asserts on, safe to read from another thread."""

from __future__ import annotations

import threading
from collections import Counter, deque

from leadsq_async import RateLimit


class SlidingWindow:
    """Arrival times of the last ``period`` seconds, for a half-open window (t - period, t]."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def count_at(self, now: float, period: float) -> int:
        """Forget arrivals at or before ``now - period`` and return how many remain."""
        horizon = now - period
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def time_at(self, index: int) -> float:
        """The ``index``-th arrival still in the window, oldest first."""
        return self._times[index]

    def add(self, now: float) -> None:
        """Record an arrival at ``now`` (times only ever grow: the clock is monotonic)."""
        self._times.append(now)

    def clear(self) -> None:
        """Forget every arrival."""
        self._times.clear()


class EmulatorStats:
    """Counts of what the emulator answered since the last ``reset()``.

    The emulator updates it from the thread that serves requests; every property takes a lock
    and returns a copy, so a test may read it from its own thread at any time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified when the last request in flight ends, for _wait_idle.
        self._idle = threading.Condition(self._lock)
        self._window = SlidingWindow()
        self._in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._total = 0
        self._by_status: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self._rate_limited = 0
        self._rate_limited_by: Counter[RateLimit] = Counter()
        self._accepted = 0
        self._keys_in_url = 0
        self._most_accepted_in_window = 0
        self._most_in_flight = self._in_flight
        self._by_endpoint: Counter[str] = Counter()
        self._refused_by_endpoint: Counter[str] = Counter()
        self._window.clear()

    def reset(self) -> None:
        """Set every count back to zero (requests in flight right now still count as such)."""
        with self._lock:
            self._clear()

    @property
    def total(self) -> int:
        """Requests received, whatever their outcome."""
        with self._lock:
            return self._total

    @property
    def by_status(self) -> dict[int, int]:
        """HTTP status -> number of answers. Rate-limit answers count under 429 or 200.

        Dropped connections and truncated bodies have no status: see ``faults``.
        """
        with self._lock:
            return dict(self._by_status)

    @property
    def faults(self) -> dict[str, int]:
        """Fault kind ("500", "502", "503", "drop", "truncate", "slow") -> times injected."""
        with self._lock:
            return dict(self._faults)

    @property
    def rate_limited(self) -> int:
        """Requests refused by a rate limit (answered 429, or 200 with the envelope)."""
        with self._lock:
            return self._rate_limited

    @property
    def rate_limited_by(self) -> dict[RateLimit, int]:
        """The limit each refusal named -> how many times: which of the configured limits
        (``EmulatorConfig.rate_limits``) refused, e.g. ``{RateLimit(200, 20.0): 3}``."""
        with self._lock:
            return dict(self._rate_limited_by)

    @property
    def accepted(self) -> int:
        """Requests the rate limit let through (each one counts against the limit)."""
        with self._lock:
            return self._accepted

    @property
    def most_accepted_in_window(self) -> int:
        """The most accepted requests that arrived within any window of the first limit's
        period (``rate_limit_period``).

        Computed exactly over arrival times (after the inbound half of the latency), with the
        period configured when each request arrived.
        """
        with self._lock:
            return self._most_accepted_in_window

    @property
    def in_flight(self) -> int:
        """Requests being handled right now (from arrival to the end of the answer)."""
        with self._lock:
            return self._in_flight

    @property
    def most_in_flight(self) -> int:
        """The most requests handled at once."""
        with self._lock:
            return self._most_in_flight

    @property
    def keys_in_url(self) -> int:
        """Requests that carried ``accessKey`` or ``secretKey`` in the query string."""
        with self._lock:
            return self._keys_in_url

    @property
    def by_endpoint(self) -> dict[str, int]:
        """Endpoint (``"LeadManagement.svc/Leads.RecentlyModified"``) -> requests received;
        requests for no known endpoint count under ``"unknown"``."""
        with self._lock:
            return dict(self._by_endpoint)

    @property
    def refused_by_endpoint(self) -> dict[str, int]:
        """Endpoint -> requests a rate limit refused."""
        with self._lock:
            return dict(self._refused_by_endpoint)

    def summary(self) -> str:
        """What the emulator served, as lines of text: requests, answers by status, rate-limit
        refusals and faults, then requests and refusals per endpoint (most requested first)."""
        with self._lock:
            statuses = ", ".join(f"{n} x {s}" for s, n in sorted(self._by_status.items()))
            faults = ", ".join(f"{n} {k}" for k, n in sorted(self._faults.items()))
            lines = [
                f"{self._total} requests, {self._accepted} accepted, "
                f"{self._rate_limited} refused by a rate limit, "
                f"at most {self._most_accepted_in_window} accepted in one period",
                f"answers: {statuses or 'none'}",
            ]
            if faults:
                lines.append(f"faults injected: {faults}")
            ranked = sorted(self._by_endpoint.items(), key=lambda item: (-item[1], item[0]))
            lines.extend(
                f"  {name}: {count} requests, {self._refused_by_endpoint[name]} refused"
                for name, count in ranked
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"EmulatorStats(total={self._total}, by_status={dict(self._by_status)}, "
                f"rate_limited={self._rate_limited}, "
                f"rate_limited_by={dict(self._rate_limited_by)}, faults={dict(self._faults)}, "
                f"most_accepted_in_window={self._most_accepted_in_window}, "
                f"most_in_flight={self._most_in_flight}, keys_in_url={self._keys_in_url})"
            )

    # Recording, called by the emulator app only.

    def _started(self, *, keys_in_url: bool, endpoint: str | None = None) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[endpoint or "unknown"] += 1
            self._in_flight += 1
            self._most_in_flight = max(self._most_in_flight, self._in_flight)
            if keys_in_url:
                self._keys_in_url += 1

    def _finished(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.notify_all()

    def _wait_idle(self, timeout: float) -> bool:
        """Block until no request is in flight; True if so within ``timeout`` real seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_flight, timeout)

    def _accept(self, now: float, period: float) -> None:
        with self._lock:
            self._accepted += 1
            self._window.add(now)
            in_window = self._window.count_at(now, period)
            self._most_accepted_in_window = max(self._most_accepted_in_window, in_window)

    def _answered(
        self, status: int, *, refused_by: RateLimit | None = None, endpoint: str | None = None
    ) -> None:
        with self._lock:
            self._by_status[status] += 1
            if refused_by is not None:
                self._refused_by_endpoint[endpoint or "unknown"] += 1
                self._rate_limited += 1
                self._rate_limited_by[refused_by] += 1

    def _fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1
