"""Fixtures shared by the test modules (the emulator's come from its pytest plugin)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import psycopg2
import pytest
import redis
from tcp_proxy import TcpProxy

from leadsq_async.testing import RunningEmulator


def pytest_configure(config: pytest.Config) -> None:
    # looptime asks the event-loop policy for the current loop before every test; in a
    # plain test run before any async one, that call would create a loop that nobody
    # closes (a ResourceWarning, an error here). Saying once that there is none makes it
    # raise instead, which looptime takes as "not an async test".
    asyncio.set_event_loop(None)


pytest_plugins = ["cli_fixtures", "docs_fixtures", "sync_fixtures"]

REDIS_URL = os.environ.get("LEADSQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


POSTGRES_URL = os.environ.get(
    "LEADSQ_TEST_POSTGRES_URL", "postgresql://postgres:@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server's URL: skip when it is down, but fail in CI, where it must run."""
    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg2.Error as exc:
        reason = f"no PostgreSQL server at {POSTGRES_URL} ({exc}); .ci/run starts one"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis server's URL: skip when it is down, but fail in CI, where it must run."""
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        probe.ping()
    except redis.RedisError as exc:
        reason = f"no Redis server at {REDIS_URL} ({exc}); .ci/run starts one"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        probe.close()
    return REDIS_URL


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A TcpProxy to the test Redis server, which the test can take down and bring back."""
    where = urlsplit(redis_url)
    async with TcpProxy(where.hostname or "127.0.0.1", where.port or 6379) as proxy:
        yield proxy


@pytest.fixture
def emulator_client(lsq_emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A plain httpx client for the emulator, sending the keys in the recommended headers."""
    headers = {
        "x-LSQ-AccessKey": lsq_emulator.access_key,
        "x-LSQ-SecretKey": lsq_emulator.secret_key,
    }
    with httpx.Client(base_url=lsq_emulator.url, headers=headers) as client:
        yield client
