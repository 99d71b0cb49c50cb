"""Paging against servers that misbehave: every walk ends, each row comes once, nothing leaks.

Each server here has a request budget: a walk that would go on for ever fails the test
with an AssertionError from the server instead of hanging it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fakes import FakeServer, opportunity, session_for
from virtual_time import virtual

import leadsq_async as lsq

Body = dict[str, Any]
Answer = Callable[[int, int, int], Body]  # (call number from 1, PageIndex, PageSize) -> body


class Scripted:
    """A server whose every answer `answer` computes; it refuses to answer past `budget`."""

    def __init__(self, answer: Answer, *, budget: int = 200) -> None:
        self.answer = answer
        self.budget = budget
        self.calls = 0
        self.pages_asked: list[tuple[int, int]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls > self.budget:
            raise AssertionError(f"the walk went on past {self.budget} requests")
        paging = json.loads(request.content)["Paging"]
        index, size = paging["PageIndex"], paging["PageSize"]
        self.pages_asked.append((index, size))
        return httpx.Response(200, json=self.answer(self.calls, index, size))


def rows(start: int, stop: int) -> list[Body]:
    return [opportunity(n) for n in range(start, stop)]


def without_ids(start: int, stop: int, salt: int = 0) -> list[Body]:
    return [{"ProspectId": "lead-1", "Score": str(n), "Salt": salt} for n in range(start, stop)]


async def walk(server: Scripted | FakeServer, **kwargs: Any) -> list[lsq.Opportunity]:
    async with session_for(server, look_ahead=kwargs.pop("look_ahead", 4)) as session:
        return await session.opportunities_of_lead("lead-1", **kwargs).collect()


# Item 9: malformed ids and answers.


@pytest.mark.parametrize(
    "bad_id", [["opp-1"], {"id": "opp-1"}, True], ids=["list", "object", "bool"]
)
@virtual
async def test_a_row_id_that_is_no_id_is_a_malformed_response(bad_id: object) -> None:
    """A row whose OpportunityId is a list, an object or a bool raises MalformedResponseError."""
    row = {**opportunity(1), "OpportunityId": bad_id}
    server = Scripted(lambda call, index, size: {"RecordCount": 1, "List": [row]})
    with pytest.raises(lsq.MalformedResponseError, match="OpportunityId"):
        await walk(server)


@virtual
async def test_an_empty_200_is_retried() -> None:
    """An empty 200 is a truncated answer: the page is asked again and the walk completes."""
    answers = [httpx.Response(200, content=b"")]

    async def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop()
        return httpx.Response(200, json={"RecordCount": 1, "List": [opportunity(1)]})

    async with session_for(handler) as session:
        records = await session.opportunities_of_lead("lead-1").collect()
        assert session.stats.retries == 1
    assert len(records) == 1
