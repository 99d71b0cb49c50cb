"""The paging stop rules and the page-size memory, without I/O: plain synchronous tests."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import leadsq_async as lsq
from leadsq_async._decode import RawPage
from leadsq_async._walk_rules import (
    MAX_PAGES_WITHOUT_RECORD_COUNT,
    SPARE_PAGES,
    PageSizes,
    PageStep,
    WalkRules,
    page_cap,
    row_key,
)

PATH = "OpportunityManagement.svc/GetOpportunitiesOfLead"
ID = "OpportunityId"


def rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [{ID: f"o{n}"} for n in range(start, stop)]


def rules(page_size: int = 10, limit: int | None = None) -> WalkRules:
    return WalkRules(PATH, ID, page_size, limit)


def after_page_one(
    record_count: int | None, served: int, page_size: int = 10, limit: int | None = None
) -> tuple[WalkRules, PageStep]:
    """A walk that has taken page 1 (``served`` rows of ``record_count``), and that step."""
    walk = rules(page_size, limit)
    first = RawPage(record_count, rows(0, served))
    walk.begin(first)
    return walk, walk.step(first)


def test_a_page_shorter_than_asked_is_the_last() -> None:
    """A short page (or an empty one) ends the walk."""
    walk = rules()
    walk.begin(RawPage(None, rows(0, 4)))
    step = walk.step(RawPage(None, rows(0, 4)))
    assert step.last
    assert step.rows == rows(0, 4)
    assert rules().step(RawPage(None, [])).last


def test_the_walk_ends_when_the_rows_reach_record_count() -> None:
    """Two full pages covering RecordCount 20 end the walk without asking for page 3."""
    walk, first = after_page_one(20, 10)
    assert not first.last
    assert walk.step(RawPage(20, rows(10, 20))).last


def test_the_walk_ends_at_limit_and_cuts_the_page() -> None:
    """With limit 15 and pages of 10, page 2 gives 5 rows and ends the walk."""
    walk, _ = after_page_one(100, 10, limit=15)
    step = walk.step(RawPage(100, rows(10, 20)))
    assert step.rows == rows(10, 15)
    assert step.last


def test_the_page_size_never_exceeds_the_limit() -> None:
    """A limit of 3 asks for pages of 3; a limit of 0 still asks a page of 1."""
    assert rules(page_size=100, limit=3).page_size == 3
    assert rules(page_size=100, limit=0).page_size == 1


def test_rows_seen_before_are_dropped_and_counted() -> None:
    """A row already yielded, or repeated on its own page, is not yielded again."""
    walk = rules(page_size=3)
    step = walk.step(RawPage(None, [{ID: "a"}, {ID: "a"}, {ID: "b"}]))
    assert step.rows == [{ID: "a"}, {ID: "b"}]
    assert walk.repeats == 1


def test_a_full_page_of_repeats_while_more_are_expected_is_a_paging_error() -> None:
    """Page 2 repeating page 1 with RecordCount 30 raises PagingError: PageIndex is ignored."""
    walk, _ = after_page_one(30, 10)
    with pytest.raises(lsq.PagingError, match="ignore PageIndex"):
        walk.step(RawPage(30, rows(0, 10)))


def test_repeats_explained_by_rows_inserted_ahead_go_on() -> None:
    """A page of repeats after RecordCount grew by as many rows is read through."""
    walk, _ = after_page_one(30, 10)
    assert walk.count_changed(40)
    assert walk.sequential
    assert walk.growth == 10
    assert not walk.step(RawPage(40, rows(0, 10))).last


def test_a_page_without_record_count_changes_nothing() -> None:
    """RecordCount None or the same keeps the walk as it is, fetching ahead."""
    walk = rules()
    walk.begin(RawPage(30, rows(0, 10)))
    assert not walk.count_changed(None)
    assert not walk.count_changed(30)
    assert not walk.sequential
    assert walk.record_count == 30


def test_a_shorter_page_of_repeats_after_larger_pages_is_the_end() -> None:
    """After a page of more rows than asked, a full page bringing nothing new ends it."""
    walk = rules(page_size=5)
    walk.begin(RawPage(None, rows(0, 8)))
    walk.step(RawPage(None, rows(0, 8)))
    assert walk.step(RawPage(None, rows(3, 8))).last


def test_page_one_short_with_more_to_come_is_a_suspected_clamp() -> None:
    """300 of 1000 rows for a page of 1000: the walk goes on at 300, not yet remembered."""
    walk = rules(page_size=1000)
    assert walk.begin(RawPage(1000, rows(0, 300)))
    assert walk.page_size == 300
    assert walk.max_pages == 2 * 4 + SPARE_PAGES


def test_a_full_second_page_with_more_to_come_confirms_the_clamp() -> None:
    """Page 2 full of new rows at the clamped size, with more after it, confirms the clamp."""
    walk, first = after_page_one(1000, 300, page_size=1000)
    assert not first.clamp_confirmed
    assert walk.step(RawPage(1000, rows(300, 600))).clamp_confirmed


def test_a_clamp_on_two_pages_is_not_confirmed() -> None:
    """Page 2 that may be the last (RecordCount 600, pages of 300) confirms nothing."""
    walk, _ = after_page_one(600, 300, page_size=1000)
    assert not walk.step(RawPage(600, rows(300, 600))).clamp_confirmed


def test_the_page_cap_follows_the_first_record_count() -> None:
    """Twice the pages RecordCount needs plus the spare ones, or the fixed cap without one."""
    assert page_cap(95, 10) == 2 * 10 + SPARE_PAGES
    assert page_cap(None, 10) == MAX_PAGES_WITHOUT_RECORD_COUNT


def test_a_walk_at_the_cap_is_over_and_says_why() -> None:
    """Past the cap the rules give a PagingError naming RecordCount and the cap."""
    walk = rules(page_size=5)
    first = RawPage(10, rows(0, 5))
    walk.begin(first)
    for index in range(walk.max_pages):
        walk.step(RawPage(10 + 5 * index, rows(5 * index, 5 * index + 5)))
    assert walk.over_cap
    assert "14 pages" in str(walk.overrun())


def test_last_index_bounds_the_pages_fetched_ahead() -> None:
    """Pages ahead stop where RecordCount (or limit) says the rows end."""
    walk = rules(limit=25)
    walk.begin(RawPage(100, rows(0, 10)))
    assert walk.last_index() == 3
    assert rules().last_index() == 0


def test_a_row_without_an_id_is_kept_as_a_small_digest() -> None:
    """A row without an id is told apart by a 16-byte digest, never a copy of the row."""
    big = {"Note": "x" * 100_000}
    kind, key = row_key(big, ID, PATH)
    assert kind == "row"
    assert isinstance(key, bytes)
    assert sys.getsizeof(key) < 100
    assert row_key(dict(big), ID, PATH) == (kind, key)
    assert row_key({"Note": "y"}, ID, PATH) != (kind, key)


@pytest.mark.parametrize("bad", [True, [1], {"a": 1}])
def test_an_id_that_is_no_id_is_a_malformed_response(bad: object) -> None:
    """A boolean, array or object id raises MalformedResponseError naming its JSON type."""
    with pytest.raises(lsq.MalformedResponseError, match="not an id"):
        row_key({ID: bad}, ID, PATH)


def test_a_learned_page_size_lowers_later_walks_sizes() -> None:
    """After learning 300, an endpoint is asked for 300 even when 1000 is asked."""
    sizes = PageSizes()
    assert sizes.size_for(PATH, 1000) == 1000
    sizes.learn(PATH, 300)
    assert sizes.size_for(PATH, 1000) == 300
    assert sizes.size_for(PATH, 100) == 100
    assert sizes.size_for("other", 1000) == 1000


def test_a_page_size_is_never_learned_below_a_page_served() -> None:
    """An endpoint that served 500 rows on a page is never remembered below 500."""
    sizes = PageSizes()
    sizes.served(PATH, 500)
    assert sizes.learn(PATH, 300) == 500
    assert sizes.size_for(PATH, 1000) == 500
