"""What a crawl has done, as counts, and the words the progress and summaries put them in."""

from __future__ import annotations

import attrs

from leadsq_async import LeadResult

__all__ = ["CrawlCounts", "format_duration", "plural"]


@attrs.define
class CrawlCounts:
    """What a crawl has done so far.

    Attributes:
        total: the ids to handle, when known (not for standard input).
        handled: ids done, failed or skipped.
        crawled: ids fetched by this run (done or failed).
        failed: ids that failed in this run.
        skipped: ids done by an earlier run, or repeated in the input.
        opportunities: opportunity rows written by this run.
        activities: activity rows written by this run.
    """

    total: int | None = None
    handled: int = 0
    crawled: int = 0
    failed: int = 0
    skipped: int = 0
    opportunities: int = 0
    activities: int = 0

    @property
    def records(self) -> int:
        """Rows written by this run, opportunities and activities."""
        return self.opportunities + self.activities

    def skip(self) -> None:
        """Count an id that needs no work."""
        self.handled += 1
        self.skipped += 1

    def add(self, result: LeadResult) -> None:
        """Count one lead's result."""
        self.handled += 1
        self.crawled += 1
        if result.error is not None:
            self.failed += 1
            return
        self.opportunities += len(result.records)
        self.activities += sum(len(rows) for rows in result.activities.values())


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``1 lead``, ``2 leads``, ``1,234 opportunities``."""
    return f"{count:,} {singular if count == 1 else many or singular + 's'}"


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m`` or ``3d04h``; ``-`` for an unknown duration."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
