"""Fixtures of the sync tests: a small account of their own, served at a fast limit, and the
times they start from and wait for (a pytest plugin, loaded by conftest.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from leadsq_async.testing import (
    Dataset,
    EmulatorApp,
    EmulatorConfig,
    RunningEmulator,
    serve_in_thread,
)

if TYPE_CHECKING:
    import dlt

#: Every opportunity type of the small account.
ACCOUNT_TYPES = [str(code) for code in range(12000, 12006)]


def small_dataset() -> Dataset:
    """Some 35 leads, 300 opportunities in 6 types and 500 activities."""
    return Dataset.generate(seed=19, thousands=20, hundreds=10, other_leads=30)


@pytest.fixture
def small_account() -> Iterator[RunningEmulator]:
    """The small account, served at 2,000 calls a second, with no index lag."""
    app = EmulatorApp(small_dataset(), EmulatorConfig(rate_limits=["2000/1"]))
    with serve_in_thread(app) as running:
        yield running


def oldest_change(emulator: RunningEmulator) -> dt.datetime:
    """A day before the account's oldest change: a first sync from there reads it all."""
    account = emulator.account
    rows = account.leads() + account.opportunities() + account.activities()
    oldest = min(dt.datetime.strptime(row["ModifiedOn"], "%Y-%m-%d %H:%M:%S") for row in rows)
    return oldest.replace(tzinfo=dt.timezone.utc) - dt.timedelta(days=1)


def next_second() -> None:
    """Wait for the clock to leave the second of the last change: with no index lag a sync
    reads up to its whole second, and a change in that second is the next's."""
    time.sleep(1.02 - time.time() % 1)


def sync_source(emulator: RunningEmulator, start: dt.datetime | None = None, **options: Any) -> Any:
    """`leadsquared_account` of ``emulator``, every type, from ``start`` (by default a day
    before its oldest change), at its fast limit, with no lag nor index lag; ``options``
    override any of that."""
    from leadsq_async.dlt import leadsquared_account

    arguments: dict[str, Any] = {
        "access_key": emulator.access_key,
        "secret_key": emulator.secret_key,
        "host": emulator.url,
        "rate_limit": "2000/1",
        "opportunity_types": ACCOUNT_TYPES,
        "start_date": oldest_change(emulator) if start is None else start,
        "lag": dt.timedelta(0),
        "index_lag": dt.timedelta(0),
    }
    return leadsquared_account(**{**arguments, **options})


def pipeline_in(directory: Path, name: str) -> dlt.Pipeline:
    """A pipeline ``name`` into its own DuckDB file in ``directory``, dataset ``account``,
    its working directory there too."""
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(directory / f"{name}.duckdb")),
        dataset_name="account",
        pipelines_dir=str(directory / "pipelines"),
    )
