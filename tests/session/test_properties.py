"""Properties, checked with Hypothesis: the decoder and the walk hold whatever the server says.

- Any status and any body decode to a page (only from a 200) or raise a `LeadSquaredError`.
- Against a model server whose page sizes, counts, repeats, insertions and failures are
  drawn at random, every walk ends, yields each row at most once, and ends with its rows
  or a `LeadSquaredError`. Honest servers give exactly their rows, in order; servers that
  only insert rows give every row that was there before, or a `PagingError`.

Walks run in virtual time (looptime) against httpx.MockTransport, so each example takes
milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import attrs
import httpx
import pytest
from fakes import SECRET, opportunity, session_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leadsq_async as lsq
from leadsq_async import _walk_rules
from leadsq_async._decode import RawPage, decode_page
from leadsq_async._endpoints import OPPORTUNITIES_OF_LEAD

# Modest example counts and no deadline: these run in CI, on a loaded machine.
DECODER_PROPERTY = settings(max_examples=300, deadline=None)
WALK_PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# The decoder.

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["", "12", " 7 ", "²", "-1", "1" * 5000, SECRET]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
rows = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["OpportunityId", "ProspectId", "Score"]), json_values),
        json_values,
    ),
    max_size=4,
)
pages = st.fixed_dictionaries(
    {},
    optional={
        "RecordCount": json_values,
        "List": st.one_of(rows, json_values),
        "Status": st.sampled_from(["Error", "Success", ""]),
        "ExceptionType": st.sampled_from(["MXAPIRateLimitExceededException", "MXException", ""]),
        "ExceptionMessage": st.one_of(
            st.text(max_size=30),
            st.just(f"API calls exceeded the limit of 25 in 5 second(s); key {SECRET}"),
        ),
        "Message": st.text(max_size=30),
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Any bytes, or JSON of a page or an envelope, whole or cut short."""
    kind = draw(st.sampled_from(["bytes", "json", "cut", "nested"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        depth = draw(st.integers(min_value=1, max_value=5000))
        return b'{"List": ' + b"[" * depth + b"]" * depth + b"}"
    encoded = json.dumps(draw(st.one_of(pages, json_values))).encode()
    if kind == "cut":
        return encoded[: draw(st.integers(min_value=0, max_value=len(encoded)))]
    return encoded


statuses = st.one_of(
    st.just(200),
    st.sampled_from([400, 401, 404, 429, 500, 502, 503]),
    st.integers(min_value=100, max_value=599),
)


@DECODER_PROPERTY
@given(status=statuses, body=bodies())
def test_any_answer_decodes_to_a_page_or_a_leadsquared_error(status: int, body: bytes) -> None:
    """decode_page returns a RawPage (only for a 200) or raises a LeadSquaredError, nothing else."""
    outcome: RawPage | lsq.LeadSquaredError
    try:
        outcome = decode_page(status, body, endpoint=OPPORTUNITIES_OF_LEAD.path, secrets=(SECRET,))
    except lsq.LeadSquaredError as error:
        outcome = error
    if isinstance(outcome, lsq.LeadSquaredError):
        assert isinstance(outcome.transient, bool)
        assert SECRET not in str(outcome)
        assert SECRET not in repr(outcome)
    else:
        assert status == 200
        assert isinstance(outcome, RawPage)
        assert outcome.record_count is None or outcome.record_count >= 0
        assert all(isinstance(row, dict) for row in outcome.rows)


# The walk, against a model server.

# Budget of requests per walk: far above any walk's page cap here, so a walk that would go
# on for ever fails the example with an AssertionError instead of hanging.
BUDGET = 1000
# The cap without RecordCount, made small so that examples stay fast.
PAGES_WITHOUT_RECORD_COUNT = 40


@attrs.frozen
class Answer:
    """How the model server answers one request."""

    clamp: int | None = None  # serve at most this many rows...
    offset_by_asked: bool = False  # ...starting at (index - 1) * PageSize asked, not served
    extra: int = 0  # rows beyond the page's size
    ignore_index: bool = False  # serve page 1, whatever is asked
    repeat_last: bool = False  # the previous answer again, verbatim
    count: str = "true"  # true, missing, first, grow, garbage
    inserts: int = 0  # rows inserted after answering...
    insert_at: str = "front"  # ...at the front, in the middle or at the end
    delay_ms: int = 0
    fail: bool = False  # a 503 instead


places = st.sampled_from(["front", "middle", "end"])
answers = st.builds(
    Answer,
    clamp=st.none() | st.integers(min_value=1, max_value=12),
    offset_by_asked=st.booleans(),
    extra=st.integers(min_value=0, max_value=12),
    ignore_index=st.booleans(),
    repeat_last=st.booleans(),
    count=st.sampled_from(["true", "missing", "first", "grow", "garbage"]),
    inserts=st.integers(min_value=0, max_value=6),
    insert_at=places,
    delay_ms=st.integers(min_value=0, max_value=3),
    fail=st.booleans(),
)


class ModelServer:
    """Serves rows by PageIndex/PageSize as a script of answers says; the last one repeats."""

    def __init__(self, data: list[dict[str, Any]], script: list[Answer]) -> None:
        self.data = data
        self.script = script
        self.first_count = len(data)
        self.calls = 0
        self.last_body: dict[str, Any] | None = None
        self.next_id = 10_000

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert self.calls <= BUDGET, f"the walk went on past {BUDGET} requests"
        answer = self.script[min(self.calls, len(self.script)) - 1]
        await asyncio.sleep(answer.delay_ms / 1000)
        if answer.fail:
            return httpx.Response(503, text="<html><title>503</title></html>")
        paging = json.loads(request.content)["Paging"]
        index, size = paging["PageIndex"], paging["PageSize"]
        if answer.repeat_last and self.last_body is not None:
            body = self.last_body
        else:
            body = self.page(answer, index, size)
        self.last_body = body
        for _ in range(answer.inserts):
            self.insert(answer.insert_at)
        return httpx.Response(200, json=body)

    def page(self, answer: Answer, index: int, size: int) -> dict[str, Any]:
        served = min(size, answer.clamp or size)
        unit = size if answer.offset_by_asked else served
        start = 0 if answer.ignore_index else (index - 1) * unit
        body: dict[str, Any] = {"List": self.data[start : start + served + answer.extra]}
        counts = {
            "true": len(self.data),
            "first": self.first_count,
            "grow": len(self.data) + self.calls,
            "garbage": "²",
        }
        if answer.count in counts:
            body["RecordCount"] = counts[answer.count]
        return body

    def insert(self, where: str) -> None:
        row = opportunity(self.next_id)
        self.next_id += 1
        position = {"front": 0, "middle": len(self.data) // 2, "end": len(self.data)}[where]
        self.data.insert(position, row)


def row_key(row: dict[str, Any]) -> object:
    return row.get("OpportunityId") or row["Score"]


async def walk(
    server: ModelServer, *, page_size: int, look_ahead: int, limit: int | None
) -> tuple[list[dict[str, Any]], lsq.LeadSquaredError | None]:
    """The rows a walk yields, and the error it ended with, if any."""
    yielded: list[dict[str, Any]] = []
    async with session_for(server, look_ahead=look_ahead) as session:
        paginator = session.opportunities_of_lead("lead-1", page_size=page_size, limit=limit)
        try:
            async with paginator as records:
                async for record in records:
                    yielded.append(lsq.unstructure(record))
        except lsq.LeadSquaredError as error:
            return yielded, error
        finally:
            assert asyncio.all_tasks() == {asyncio.current_task()}, "tasks left running"
    return yielded, None


def make_rows(count: int, with_ids: bool) -> list[dict[str, Any]]:
    made = [opportunity(n) for n in range(count)]
    if not with_ids:
        for row in made:
            del row["OpportunityId"]
    return made


@pytest.mark.looptime
@WALK_PROPERTY
@given(
    row_count=st.integers(min_value=0, max_value=60),
    with_ids=st.booleans(),
    script=st.lists(answers, min_size=1, max_size=8),
    page_size=st.integers(min_value=1, max_value=12),
    look_ahead=st.integers(min_value=0, max_value=4),
    limit=st.none() | st.integers(min_value=0, max_value=70),
)
async def test_every_walk_ends_and_yields_each_row_at_most_once(
    row_count: int,
    with_ids: bool,
    script: list[Answer],
    page_size: int,
    look_ahead: int,
    limit: int | None,
) -> None:
    """Whatever the server does, the walk ends, with each row at most once or an error."""
    server = ModelServer(make_rows(row_count, with_ids), script)
    with mock.patch.object(
        _walk_rules, "MAX_PAGES_WITHOUT_RECORD_COUNT", PAGES_WITHOUT_RECORD_COUNT
    ):
        yielded, _ = await walk(server, page_size=page_size, look_ahead=look_ahead, limit=limit)
    keys = [row_key(row) for row in yielded]
    assert len(keys) == len(set(keys))
    assert limit is None or len(yielded) <= limit


@pytest.mark.looptime
@WALK_PROPERTY
@given(
    row_count=st.integers(min_value=0, max_value=60),
    clamp=st.none() | st.integers(min_value=1, max_value=12),
    page_size=st.integers(min_value=1, max_value=12),
    look_ahead=st.integers(min_value=0, max_value=4),
    limit=st.none() | st.integers(min_value=0, max_value=70),
)
async def test_an_honest_server_gives_exactly_its_rows_in_order(
    row_count: int, clamp: int | None, page_size: int, look_ahead: int, limit: int | None
) -> None:
    """Without faults (a clamp is no fault), a walk yields every row once, in order."""
    data = make_rows(row_count, with_ids=True)
    server = ModelServer(list(data), [Answer(clamp=clamp)])
    yielded, error = await walk(server, page_size=page_size, look_ahead=look_ahead, limit=limit)
    assert error is None
    assert yielded == data[:limit]


@pytest.mark.looptime
@WALK_PROPERTY
@given(
    row_count=st.integers(min_value=0, max_value=60),
    inserts=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=8), st.sampled_from(["front", "middle", "end"])
        ),
        min_size=1,
        max_size=8,
    ),
    page_size=st.integers(min_value=1, max_value=12),
    look_ahead=st.integers(min_value=0, max_value=4),
    delays=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8),
)
async def test_rows_inserted_while_paging_lose_no_row_that_was_there(
    row_count: int,
    inserts: list[tuple[int, str]],
    page_size: int,
    look_ahead: int,
    delays: list[int],
) -> None:
    """With rows inserted anywhere during the walk, every row there before comes once,
    unless the walk raises PagingError (rows growing faster than it reads them)."""
    data = make_rows(row_count, with_ids=True)
    script = [
        Answer(inserts=count, insert_at=where, delay_ms=delays[n % len(delays)])
        for n, (count, where) in enumerate(inserts)
    ]
    server = ModelServer(list(data), script)
    yielded, error = await walk(server, page_size=page_size, look_ahead=look_ahead, limit=None)
    keys = [row_key(row) for row in yielded]
    assert len(keys) == len(set(keys))
    if error is None:
        assert {row_key(row) for row in data} <= set(keys)
    else:
        assert isinstance(error, lsq.PagingError)
