"""Paging against servers that misbehave: every walk ends, each row comes once, nothing leaks.

Each server here has a request budget: a walk that would go on for ever fails the test
with an AssertionError from the server instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fakes import FakeServer, opportunity, session_for
from task_check import no_task_left_behind

import leadsq_async as lsq
from leadsq_async import _walk_rules

pytestmark = pytest.mark.usefixtures(no_task_left_behind.__name__)

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


# Item 5: every walk ends.


@pytest.mark.looptime
async def test_a_repeated_page_whose_record_count_grows_ends_in_a_paging_error() -> None:
    """Page 1 again and again, RecordCount up a page each time: PagingError, within the cap."""
    server = Scripted(lambda call, index, size: {"RecordCount": 10 * call, "List": rows(0, size)})
    with pytest.raises(lsq.PagingError):
        await walk(server, page_size=5)
    # Page 1 said 10 rows: 2 pages, so the cap is 2 * 2 + 10 pages; page 2, fetched
    # ahead, is asked again once RecordCount has changed.
    assert server.calls <= 14 + 1


@pytest.mark.parametrize("make_rows", [rows, without_ids], ids=["with-ids", "without-ids"])
@pytest.mark.looptime
async def test_a_repeated_page_after_record_count_vanishes_ends_in_a_paging_error(
    make_rows: Callable[[int, int], list[Body]],
) -> None:
    """RecordCount on page 1 only, then page 1 again: PagingError at once, not a loop."""

    def answer(call: int, index: int, size: int) -> Body:
        body: Body = {"List": make_rows(0, size)}
        if call == 1:
            body["RecordCount"] = 100
        return body

    server = Scripted(answer)
    with pytest.raises(lsq.PagingError, match="already"):
        await walk(server, page_size=5)
    assert server.calls <= 1 + 1 + 4  # page 1, page 2, and the pages fetched ahead


@pytest.mark.looptime
async def test_new_rows_for_ever_while_record_count_grows_end_at_the_page_cap() -> None:
    """A server inventing a page of new rows per answer, count always a page ahead, is cut off."""

    def answer(call: int, index: int, size: int) -> Body:
        start = (index - 1) * size
        return {"RecordCount": start + 2 * size, "List": rows(start, start + size)}

    server = Scripted(answer)
    with pytest.raises(lsq.PagingError, match="RecordCount"):
        await walk(server, page_size=5, look_ahead=0)
    # Page 1 said 10 rows, 2 pages: no more than 2 * 2 + 10 pages are asked for.
    assert server.calls == 14


@pytest.mark.looptime
async def test_rows_without_ids_that_never_repeat_end_at_the_cap_without_a_record_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without RecordCount, full pages of ever-new rows stop at the cap with a PagingError."""
    monkeypatch.setattr(_walk_rules, "MAX_PAGES_WITHOUT_RECORD_COUNT", 20)
    server = Scripted(lambda call, index, size: {"List": without_ids(0, size, salt=call)})
    with pytest.raises(lsq.PagingError, match="20 pages"):
        await walk(server, page_size=5)
    assert server.calls == 20


@pytest.mark.looptime
async def test_a_burst_of_inserts_ahead_larger_than_a_page_is_read_through() -> None:
    """Twelve rows inserted ahead after page 1 (pages of 5) repeat pages, and every row comes."""
    data = rows(0, 20)

    def answer(call: int, index: int, size: int) -> Body:
        start = (index - 1) * size
        body = {"RecordCount": len(data), "List": data[start : start + size]}
        if call == 1:
            data[0:0] = rows(100, 112)
        return body

    records = await walk(Scripted(answer), page_size=5, look_ahead=0)
    ids = [record.opportunity_id for record in records]
    assert len(ids) == len(set(ids))
    assert {row["OpportunityId"] for row in rows(0, 20)} <= set(ids)


# Item 6: one odd answer does not poison the session.


@pytest.mark.looptime
async def test_one_short_first_page_does_not_shrink_the_next_walks_pages() -> None:
    """After a lead whose page 1 held 1 row of RecordCount 2, 2,500 rows still cost 3 requests."""
    odd = [opportunity(1, "odd-lead"), opportunity(2, "odd-lead")]
    many = rows(0, 2500)

    def answer(call: int, index: int, size: int) -> Body:
        if call == 1:
            return {"RecordCount": 2, "List": odd[:1]}
        if call == 2:
            return {"RecordCount": 2, "List": odd[index - 1 : index]}
        start = (index - 1) * size
        return {"RecordCount": len(many), "List": many[start : start + size]}

    server = Scripted(answer)
    async with session_for(server) as session:
        assert len(await session.opportunities_of_lead("odd-lead").collect()) == 2
        assert server.pages_asked == [(1, 1000), (2, 1)]
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 2500
    assert server.pages_asked[2:] == [(1, 1000), (2, 1000), (3, 1000)]


@pytest.mark.looptime
async def test_a_clamp_is_never_learned_below_a_page_the_server_served() -> None:
    """Once the server served 1000 rows a page, a walk seeing 1 row a page keeps 1000 for others."""
    many = rows(0, 2500)
    odd = [opportunity(n, "odd-lead") for n in range(5)]
    serving_one_row: list[bool] = []

    def answer(call: int, index: int, size: int) -> Body:
        if serving_one_row:
            # An odd lead: one row a page whatever is asked, five rows in all.
            return {"RecordCount": len(odd), "List": odd[index - 1 : index]}
        start = (index - 1) * size
        return {"RecordCount": len(many), "List": many[start : start + size]}

    server = Scripted(answer, budget=100)
    async with session_for(server) as session:
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 2500
        serving_one_row.append(True)
        assert len(await session.opportunities_of_lead("odd-lead").collect()) == 5
        serving_one_row.clear()
        server.pages_asked.clear()
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 2500
    assert server.pages_asked == [(1, 1000), (2, 1000), (3, 1000)]


# A clamp confirmed by a full page 2 with more to come is remembered:
# test_session.py's test_clamp_is_remembered_for_the_next_walk (700 rows, pages of 300).


@pytest.mark.looptime
async def test_a_clamp_on_a_lead_of_two_pages_is_not_remembered() -> None:
    """300 of 1000 rows and a full last page 2 at 300 may be a short page: nothing learned."""
    server = FakeServer(rows(0, 600), clamp=300)
    async with session_for(server) as session:
        assert len(await session.opportunities_of_lead("lead-1").collect()) == 600
        server.pages_asked.clear()
        await session.opportunities_of_lead("lead-1").collect()
    assert server.pages_asked[0] == (1, 1000)


# Item 7: more rows than asked.


@pytest.mark.looptime
async def test_a_page_of_twice_the_rows_asked_is_taken_once_without_error() -> None:
    """Pages of 2 x PageSize rows: every row once, no false PagingError, no extra request."""
    data = rows(0, 10)

    def answer(call: int, index: int, size: int) -> Body:
        start = (index - 1) * size
        return {"RecordCount": len(data), "List": data[start : start + 2 * size]}

    server = Scripted(answer)
    records = await walk(server, page_size=5)
    assert [record.opportunity_id for record in records] == [row["OpportunityId"] for row in data]
    assert server.pages_asked == [(1, 5)]


@pytest.mark.looptime
async def test_pages_of_twice_the_rows_without_record_count_end_quietly() -> None:
    """Without RecordCount, a page of repeats shorter than the pages served is the end."""
    data = rows(0, 23)

    def answer(call: int, index: int, size: int) -> Body:
        start = (index - 1) * size
        return {"List": data[start : start + 2 * size]}

    records = await walk(Scripted(answer), page_size=5)
    assert [record.opportunity_id for record in records] == [row["OpportunityId"] for row in data]


@pytest.mark.looptime
async def test_oversized_pages_that_ignore_page_index_still_raise() -> None:
    """Twice the rows asked, the same ones on every page: still PagingError."""
    server = Scripted(lambda call, index, size: {"RecordCount": 100, "List": rows(0, 2 * size)})
    with pytest.raises(lsq.PagingError):
        await walk(server, page_size=5)


# Item 9: malformed ids and answers.


@pytest.mark.parametrize(
    "bad_id", [["opp-1"], {"id": "opp-1"}, True], ids=["list", "object", "bool"]
)
@pytest.mark.looptime
async def test_a_row_id_that_is_no_id_is_a_malformed_response(bad_id: object) -> None:
    """A row whose OpportunityId is a list, an object or a bool raises MalformedResponseError."""
    row = {**opportunity(1), "OpportunityId": bad_id}
    server = Scripted(lambda call, index, size: {"RecordCount": 1, "List": [row]})
    with pytest.raises(lsq.MalformedResponseError, match="OpportunityId"):
        await walk(server)


@pytest.mark.looptime
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


@pytest.mark.looptime
async def test_a_walk_left_on_an_error_has_ended_its_fetches_ahead() -> None:
    """Leaving `async with paginator` on a page's error leaves no fetch ahead running."""
    never = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        index = json.loads(request.content)["Paging"]["PageIndex"]
        if index == 2:
            return httpx.Response(400, json={"Status": "Error", "ExceptionMessage": "no"})
        if index > 2:
            await never.wait()
        return httpx.Response(200, json={"RecordCount": 50, "List": rows(0, 10)})

    async def read_all(paginator: lsq.Paginator[lsq.Opportunity]) -> None:
        async with paginator as records:
            async for _ in records:
                pass

    async with session_for(handler, look_ahead=3) as session:
        with pytest.raises(lsq.BadRequestError):
            await read_all(session.opportunities_of_lead("lead-1", page_size=10))
        assert asyncio.all_tasks() == {asyncio.current_task()}
