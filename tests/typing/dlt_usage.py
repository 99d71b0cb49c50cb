"""Exercises the dlt source's public API for mypy --strict only; pytest does not collect it."""

from __future__ import annotations

import dlt
from dlt.extract import DltSource

import leadsq_async as lsq
from leadsq_async.dlt import LoadProgress, failed_leads, leadsquared


class Printer:
    """A progress display, checked against the LoadProgress protocol."""

    def crawl_started(self, session: lsq.Session) -> None:
        print(session.stats.requests)

    def lead_skipped(self, lead_id: str) -> None:
        print(lead_id)

    def lead_crawled(self, result: lsq.LeadResult) -> None:
        print(result.lead_id, result.error)


def load(pipeline: dlt.Pipeline, lead_ids: list[str]) -> dict[str, str]:
    progress: LoadProgress = Printer()
    source: DltSource = leadsquared(
        lead_ids,
        access_key="key",
        secret_key="secret",
        host="api-in21.leadsquared.com",
        rate_limit=lsq.RateLimit(25, 5.0),
        with_activities=False,
        opportunity_type="12002",
        progress=progress,
    )
    pipeline.run(source)
    pipeline.run(leadsquared(lead_ids, rate_limit="25/5"))
    pipeline.run(leadsquared(lead_ids, rate_limit=lambda: lsq.SlidingWindowLimiter()))
    return failed_leads(pipeline)
