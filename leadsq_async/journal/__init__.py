"""The crawl's journal: a directory that holds every record of a crawl exactly once, even
after ``kill -9``, and the crawl that fills it (`crawl_into`), used by ``leadsq-async crawl``
and the dlt source. How it keeps that promise: docs/how-it-works/journal.md."""

from __future__ import annotations

from ._directory import CrawlDirectory, CrawlError, DirectoryInUse, naming
from ._format import (
    ACTIVITIES,
    ACTIVITY_INDEX,
    ALL_FILES,
    CHECKPOINT,
    FAILED,
    OPPORTUNITIES,
    CrawlSettings,
    JournalEntry,
    dump_row,
    failed_for_good,
)
from ._loop import JournaledCrawl, crawl_into

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_INDEX",
    "ALL_FILES",
    "CHECKPOINT",
    "FAILED",
    "OPPORTUNITIES",
    "CrawlDirectory",
    "CrawlError",
    "CrawlSettings",
    "DirectoryInUse",
    "JournalEntry",
    "JournaledCrawl",
    "crawl_into",
    "dump_row",
    "failed_for_good",
    "naming",
]
