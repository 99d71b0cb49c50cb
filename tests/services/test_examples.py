"""The examples in examples/ run against the emulator and do what they say.

Each example reads the emulator's URL and keys from ``LSQ_HOST``,
``LSQ_ACCESS_KEY`` and ``LSQ_SECRET_KEY`` (and ``REDIS_URL``), as it would an
account's; the tests set them with ``monkeypatch`` and call the example's own
functions.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import leadsq_async as lsq
from leadsq_async.testing import RunningEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulator_env(lsq_emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    """The emulator, with a short rate-limit window, named by the LSQ_* variables."""
    lsq_emulator.config.rate_limit_calls = 10
    lsq_emulator.config.rate_limit_period = 0.3
    monkeypatch.setenv("LSQ_HOST", lsq_emulator.url)
    monkeypatch.setenv("LSQ_ACCESS_KEY", lsq_emulator.access_key)
    monkeypatch.setenv("LSQ_SECRET_KEY", lsq_emulator.secret_key)
    monkeypatch.setenv("LSQ_RATE_LIMIT", "10/0.3")
    return lsq_emulator


def small_leads(emulator: RunningEmulator, count: int) -> list[str]:
    """Leads with 0 to 12 opportunities each (not the big generated ones)."""
    shaped = set(emulator.data.leads_by_shape.values())
    return [lead for lead in emulator.data.opportunities if lead not in shaped][:count]


def quickstart_leads(emulator: RunningEmulator, directory: Path) -> tuple[list[str], Path]:
    """The ``leads.txt`` that ``leadsq-async emulator --lead-ids leads.txt`` writes (every
    lead of the emulator, in its order: tests/docs checks the two are the same), which
    examples.md runs its examples on."""
    leads = list(emulator.data.opportunities)
    leads_file = directory / "leads.txt"
    leads_file.write_text("".join(f"{lead}\n" for lead in leads), encoding="utf-8")
    return leads, leads_file


def opportunity_ids(emulator: RunningEmulator, leads: list[str]) -> list[str]:
    """Every opportunity id of ``leads``, as the emulator holds them."""
    return [row["OpportunityId"] for lead in leads for row in emulator.data.opportunities[lead]]


# --- the web backend -------------------------------------------------------------------


@pytest.fixture
async def web_client(emulator_env: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the web backend in process, its lifespan started."""
    web_backend = load_example("web_backend")
    app = web_backend.create_app(web_backend.Settings.from_env())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
            yield client


async def test_web_backend_returns_the_newest_opportunities(
    web_client: httpx.AsyncClient, emulator_env: RunningEmulator
) -> None:
    """GET /leads/{id}/opportunities?limit=3 answers the lead's three newest opportunities."""
    lead = emulator_env.data.leads_by_shape["thousands"]

    response = await web_client.get(f"/leads/{lead}/opportunities", params={"limit": "3"})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["opportunities"]) == 3
    returned = {item["id"] for item in body["opportunities"]}
    records = [lsq.structure(row, lsq.Opportunity) for row in emulator_env.data.opportunities[lead]]
    created = {record.opportunity_id: record.created_on for record in records if record.created_on}
    oldest_returned = min(created[opportunity_id] for opportunity_id in returned)
    others = [when for opportunity_id, when in created.items() if opportunity_id not in returned]
    assert all(when <= oldest_returned for when in others)
    assert all(item["created_on"].endswith("+00:00") for item in body["opportunities"])


async def test_web_backend_answers_404_for_an_unknown_lead(
    web_client: httpx.AsyncClient,
) -> None:
    """A lead LeadSquared does not know gets a 404, not a 502."""
    response = await web_client.get("/leads/no-such-lead/opportunities")

    assert response.status_code == 404
    assert response.json() == {"error": "no lead no-such-lead"}


async def test_web_backend_refuses_a_bad_limit_without_calling_leadsquared(
    web_client: httpx.AsyncClient, emulator_env: RunningEmulator
) -> None:
    """limit=0 is a 400, and no request reaches the emulator."""
    lead = emulator_env.data.leads_by_shape["one"]

    response = await web_client.get(f"/leads/{lead}/opportunities", params={"limit": "0"})

    assert response.status_code == 400
    assert emulator_env.stats.total == 0


async def test_web_backend_requests_share_one_rate_limit(
    web_client: httpx.AsyncClient, emulator_env: RunningEmulator
) -> None:
    """Thirty concurrent requests are all answered, and the emulator refuses none."""
    leads = small_leads(emulator_env, 20) + [emulator_env.data.leads_by_shape["page"]] * 10

    responses = await asyncio.gather(
        *(web_client.get(f"/leads/{lead}/opportunities") for lead in leads)
    )

    assert [response.status_code for response in responses] == [200] * len(leads)
    assert emulator_env.stats.rate_limited == 0
    assert emulator_env.stats.most_accepted_in_window <= 10


# --- the queue worker ------------------------------------------------------------------


def test_worker_writes_every_opportunity_once(
    emulator_env: RunningEmulator, tmp_path: Path
) -> None:
    """Every opportunity of every lead in the file is written exactly once; exit code 0.
    The file is the one examples.md runs it on, the quickstart's ``leads.txt``."""
    worker = load_example("worker")
    leads, leads_file = quickstart_leads(emulator_env, tmp_path)
    out = tmp_path / "opportunities.jsonl"

    status = worker.main(["--leads-file", str(leads_file), "--out", str(out), "--workers", "4"])

    written = [json.loads(line)["OpportunityId"] for line in out.read_text().splitlines()]
    assert status == 0
    assert sorted(written) == sorted(opportunity_ids(emulator_env, leads))
    assert emulator_env.stats.rate_limited == 0


def test_worker_carries_on_past_a_failed_lead(
    emulator_env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown lead is reported and makes the exit code 1; the other leads are written."""
    worker = load_example("worker")
    leads = small_leads(emulator_env, 3)
    leads_file = tmp_path / "leads.txt"
    leads_file.write_text("\n".join([leads[0], "no-such-lead", *leads[1:]]) + "\n")
    out = tmp_path / "opportunities.jsonl"

    status = worker.main(["--leads-file", str(leads_file), "--out", str(out)])

    written = [json.loads(line)["OpportunityId"] for line in out.read_text().splitlines()]
    assert status == 1
    assert sorted(written) == sorted(opportunity_ids(emulator_env, leads))
    assert "lead 'no-such-lead' failed" in capsys.readouterr().err


def test_worker_serves_metrics_counted_from_the_sessions_events(
    emulator_env: RunningEmulator, tmp_path: Path
) -> None:
    """/metrics counts each request the emulator answered, each page and each row written."""
    worker = load_example("worker")
    leads = small_leads(emulator_env, 12)
    registry = CollectorRegistry()
    server = worker.serve_metrics(registry, 0)
    try:
        with io.StringIO("\n".join(leads)) as ids, io.StringIO() as out:
            tally = asyncio.run(worker.run(ids, out, 4, worker.SessionMetrics(registry)))
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = httpx.get(url).text
    finally:
        server.shutdown()
        server.server_close()
    samples = {
        (sample.name, sample.labels.get("status")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("endpoint") == "GetOpportunitiesOfLead"
    }
    requests = emulator_env.stats.total
    assert requests == len(leads)
    assert samples[("leadsq_requests_total", None)] == requests
    assert samples[("leadsq_responses_total", "200")] == requests
    assert samples[("leadsq_response_seconds_count", None)] == requests
    assert samples[("leadsq_pages_total", None)] == len(leads)
    assert samples[("leadsq_rows_total", None)] == tally.opportunities > 0


def test_worker_main_serves_metrics_while_it_runs(
    emulator_env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--metrics-port 0 says where /metrics is served, and the run ends cleanly."""
    worker = load_example("worker")
    leads_file = tmp_path / "leads.txt"
    leads_file.write_text("\n".join(small_leads(emulator_env, 3)) + "\n", encoding="utf-8")
    out = tmp_path / "opportunities.jsonl"

    status = worker.main(
        ["--leads-file", str(leads_file), "--out", str(out), "--metrics-port", "0"]
    )

    assert status == 0
    assert re.search(r"metrics on http://127\.0\.0\.1:\d+/metrics", capsys.readouterr().err)


# --- the multi-process crawl with Redis -----------------------------------------------


@pytest.fixture
def redis_key(redis_url: str) -> Iterator[str]:
    """A Redis key no other test uses, deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    key = f"leadsq-async:test-example:{uuid.uuid4().hex}"
    try:
        yield key
    finally:
        client.delete(key, f"{key}:state")
        client.close()


@pytest.mark.redis
def test_multiprocess_crawl_keeps_to_one_limit_across_processes(
    emulator_env: RunningEmulator,
    redis_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    redis_url: str,
) -> None:
    """Three processes crawl every lead once, and together never exceed the emulator's limit.
    The file is the one examples.md runs it on, the quickstart's ``leads.txt``."""
    multiprocess_crawl = load_example("multiprocess_crawl")
    leads, leads_file = quickstart_leads(emulator_env, tmp_path)
    out = tmp_path / "crawl"

    status = multiprocess_crawl.main(
        [
            *("--leads-file", str(leads_file), "--out", str(out), "--processes", "3"),
            *("--redis-url", redis_url, "--redis-key", redis_key),
        ]
    )

    written = [
        json.loads(line)["OpportunityId"]
        for path in sorted(out.glob("opportunities-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert status == 0
    assert sorted(written) == sorted(opportunity_ids(emulator_env, leads))
    assert emulator_env.stats.rate_limited == 0
    assert emulator_env.stats.most_accepted_in_window <= 10
    assert f"3 processes: {len(leads)} leads" in capsys.readouterr().out
