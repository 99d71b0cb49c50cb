"""Ways to run the emulator: in process through httpx.ASGITransport (on virtual time), in a
thread of its own, in the running event loop, and through the pytest fixtures (the last three
over real loopback sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_in_process import KEYS, OPPORTUNITIES, client_of, virtual_app

from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    EmulatorServer,
    InjectedDisconnect,
    RunningEmulator,
    serve_in_thread,
)


@pytest.fixture(scope="module")
def small_data() -> Dataset:
    """A small generated dataset, quick to build."""
    return Dataset.generate(seed=3, thousands=30, hundreds=30, other_leads=2)


@pytest.mark.looptime
async def test_in_process_client_gets_a_page(small_data: Dataset) -> None:
    """Through ASGITransport the app answers a page like it does over a socket."""
    app = virtual_app(small_data)
    lead = small_data.leads_by_shape["page_plus_one"]
    async with client_of(app) as client:
        response = await client.post(OPPORTUNITIES, params={"leadId": lead})
    assert (response.json()["RecordCount"], len(response.json()["List"])) == (101, 100)
    assert app.stats.by_status == {200: 1}


@pytest.mark.parametrize("kind", ["drop", "truncate"])
@pytest.mark.looptime
async def test_in_process_disconnect_faults_raise_remote_protocol_error(
    small_data: Dataset, kind: str
) -> None:
    """In process, a drop or truncate raises InjectedDisconnect, an httpx.RemoteProtocolError."""
    app = virtual_app(small_data, EmulatorConfig(fault_rate=1.0, fault_kinds={kind}))
    async with client_of(app) as client:
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            await client.post(OPPORTUNITIES, params={"leadId": small_data.leads_by_shape["one"]})
    assert isinstance(raised.value, InjectedDisconnect)


@pytest.mark.looptime
async def test_in_process_rate_limit_answers_429(small_data: Dataset) -> None:
    """The rate limit works in process too."""
    app = virtual_app(small_data, EmulatorConfig(rate_limit_calls=1))
    async with client_of(app) as client:
        params = {"leadId": small_data.leads_by_shape["one"]}
        statuses = [(await client.post(OPPORTUNITIES, params=params)).status_code for _ in "ab"]
    assert statuses == [200, 429]


def test_serve_in_thread_serves_its_own_data_and_config(small_data: Dataset) -> None:
    """A separate server carries its own dataset and config, apart from the fixture's."""
    app = EmulatorApp(small_data, EmulatorConfig(access_key="mine", secret_key="also-mine"))
    headers = {"x-LSQ-AccessKey": "mine", "x-LSQ-SecretKey": "also-mine"}
    with serve_in_thread(app) as running, httpx.Client(headers=headers) as client:
        lead = small_data.leads_by_shape["thousands"]
        response = client.post(running.url + OPPORTUNITIES, params={"leadId": lead})
    assert response.json()["RecordCount"] == 30
    assert running.url.startswith("http://127.0.0.1:")
    assert running.base_url == running.url + "/v2/"


def test_a_server_on_every_interface_gives_a_loopback_url(small_data: Dataset) -> None:
    """Bound to 0.0.0.0, the server's URL is the loopback one, which a client can use."""
    with serve_in_thread(EmulatorApp(small_data), host="0.0.0.0") as running:
        port = running.url.rsplit(":", 1)[1]
        assert running.url == f"http://127.0.0.1:{port}"
        with httpx.Client(headers=KEYS) as client:
            response = client.post(running.url + OPPORTUNITIES, params={"leadId": "nobody"})
    assert response.status_code == 500


def test_a_stopped_server_refuses_connections(small_data: Dataset) -> None:
    """Once the block exits, the port no longer accepts connections."""
    with serve_in_thread(EmulatorApp(small_data)) as running:
        url = running.url
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.post(url + OPPORTUNITIES)


def test_user_json_file_is_served(tmp_path: Path) -> None:
    """A dataset loaded from a user's JSON file is what the server answers with."""
    row = {"ProspectId": "lead-1", "OpportunityId": "opp-1", "Status": "Open", "Total": "1"}
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"opportunities": {"lead-1": [row]}}), encoding="utf-8")
    with serve_in_thread(EmulatorApp(Dataset.load(path))) as running, httpx.Client() as client:
        response = client.post(
            running.url + OPPORTUNITIES, params={"leadId": "lead-1"}, headers=KEYS
        )
    assert response.json() == {"RecordCount": 1, "List": [row]}


async def test_serve_runs_in_the_event_loop_until_cancelled(small_data: Dataset) -> None:
    """EmulatorServer.serve() reports its URL when ready and stops cleanly when cancelled."""
    server = EmulatorServer(EmulatorApp(small_data))
    ready: asyncio.Future[RunningEmulator] = asyncio.get_running_loop().create_future()
    serving = asyncio.ensure_future(server.serve(on_ready=ready.set_result))
    running = await asyncio.wait_for(ready, timeout=10)
    async with httpx.AsyncClient(base_url=running.url, headers=KEYS) as client:
        response = await client.post(OPPORTUNITIES, params={"leadId": "nobody"})
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert response.status_code == 500
    assert server.url == running.url


def test_server_url_before_start_raises() -> None:
    """Asking a server that is not listening for its URL raises RuntimeError."""
    with pytest.raises(RuntimeError, match="not listening"):
        _ = EmulatorServer(EmulatorApp(Dataset())).url


def test_binding_a_taken_port_raises_os_error(small_data: Dataset) -> None:
    """A second server on a port in use fails with OSError."""
    with serve_in_thread(EmulatorApp(small_data)) as running:
        port = int(running.url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="in use"):
            EmulatorServer(EmulatorApp(small_data), port=port).start()


def test_fixture_hands_back_the_session_server(
    lsq_emulator: RunningEmulator, lsq_emulator_server: RunningEmulator
) -> None:
    """lsq_emulator is the session's server, with URL, keys and data."""
    assert lsq_emulator is lsq_emulator_server
    assert lsq_emulator.url.startswith("http://127.0.0.1:")
    assert (lsq_emulator.access_key, lsq_emulator.secret_key) == (
        "demo-access-key",
        "demo-secret-key",
    )
    assert set(lsq_emulator.data.leads_by_shape) == {
        "empty",
        "one",
        "page",
        "page_plus_one",
        "thousands",
    }


@pytest.mark.looptime
async def test_app_reset_restores_config_data_stats_and_window(small_data: Dataset) -> None:
    """reset() (run by lsq_emulator before each test) undoes config, data and stats changes."""
    app = virtual_app(small_data.copy())
    lead = app.data.leads_by_shape["one"]
    app.config.rate_limit_calls = 1
    app.data.add_opportunity(lead)
    async with client_of(app) as client:
        await client.post(OPPORTUNITIES, params={"leadId": lead})
        app.reset()
        answer = await client.post(OPPORTUNITIES, params={"leadId": lead})
    assert app.config == EmulatorConfig()
    assert len(app.data.opportunities[lead]) == 1
    assert answer.status_code == 200  # the window was emptied too
    assert app.stats.total == 1


@pytest.mark.looptime
async def test_app_supports_the_lifespan_protocol(small_data: Dataset) -> None:
    """The app completes lifespan startup and shutdown, for servers that send them."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> MutableMapping[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])

    await virtual_app(small_data)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
