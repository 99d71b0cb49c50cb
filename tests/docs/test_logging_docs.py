"""docs/logging.md's table of log lines: a line it shows is the line the library logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from emulator_in_process import client_of, session_on, virtual_app

import leadsq_async as lsq
from leadsq_async.testing import Dataset, EmulatorConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "logging.md"
DATA = Dataset.generate(seed=7, thousands=0, hundreds=0, other_leads=40)


@pytest.mark.looptime
async def test_the_learned_rate_limit_warning_is_the_one_the_page_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server enforcing 30 calls a minute on a session keeping to 25 per 5 s logs the very
    line the page shows for that case. (The page showed a limit of the configured one's
    period, 10 per 5 s "beside 25 calls per 5 s": a learned limit replaces a limit of its
    period, so that line was never logged.)"""
    await _crawl(["25/5", "30/60"], list(DATA.opportunities), rate_limit=lsq.RateLimit(25, 5))
    warning = _the_warning(caplog)
    assert f"| `{warning}` |" in PAGE.read_text(encoding="utf-8")


_LIMIT_AND_TIME = (
    (re.compile(r"\d+ calls per [\w ]+? is spent"), "N calls per PERIOD is spent"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"), "TIME UTC"),
)


def _shape(line: str) -> str:
    """``line`` with its limit and its time in words, so that two waits can be compared."""
    for pattern, words in _LIMIT_AND_TIME:
        line = pattern.sub(words, line)
    return line


@pytest.mark.looptime
async def test_the_quota_wait_warning_is_the_one_the_page_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wait for a spent quota logs the page's line, but for the quota and the time."""
    await _crawl(
        ["25/5", "4/600"],
        list(DATA.opportunities)[:5],
        rate_limit=[lsq.RateLimit(25, 5), lsq.RateLimit(4, 600)],
        wait_for_quota=True,
    )
    warning = _the_warning(caplog)
    shown = re.findall(r"\| `(the rate limit [^`]*)` \|", PAGE.read_text(encoding="utf-8"))
    assert [_shape(line) for line in shown] == [_shape(warning)]


async def _crawl(served: list[str], leads: list[str], **options: Any) -> None:
    """Crawl ``leads`` from an emulator enforcing the ``served`` limits, every one fetched."""
    app = virtual_app(DATA, EmulatorConfig(rate_limits=served))
    async with (
        client_of(app) as client,
        session_on(client, **options) as session,
        session.crawl_opportunities(leads) as results,
    ):
        assert all([result.error is None async for result in results])


def _the_warning(caplog: pytest.LogCaptureFixture) -> str:
    """The one warning the library logged."""
    [warning] = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("leadsq_async") and record.levelno == logging.WARNING
    ]
    return warning
