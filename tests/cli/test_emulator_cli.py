"""The ``emulator`` and ``demo`` commands as a user runs them: subprocesses over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from rich.console import Console
from rich.default_styles import DEFAULT_STYLES

import leadsq_async as lsq
from leadsq_async.cli._display import BAR_THEME
from leadsq_async.cli._serve import _banner
from leadsq_async.testing import Dataset, EmulatorApp, EmulatorConfig, RunningEmulator

COMMAND = [sys.executable, "-m", "leadsq_async.cli"]
SMALL = ["--port", "0", "--other-leads", "2", "--thousands", "3"]


@pytest.fixture
def env() -> dict[str, str]:
    """The environment without LSQ_ variables, output unbuffered."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LSQ_")}
    variables["PYTHONUNBUFFERED"] = "1"
    return variables


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    return subprocess.run(
        [*COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def banner_of(stream: IO[str]) -> str:
    """The emulator's banner: its lines up to "Press Ctrl-C to stop."."""
    lines = []
    for line in stream:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return "".join(lines)


@pytest.fixture
def serve(env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``emulator`` processes (append to the list); each is stopped with SIGINT after."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        assert process.returncode == 0


def start(serve: list[subprocess.Popen[str]], env: dict[str, str], *args: str) -> str:
    """Start ``emulator *args`` and return its banner."""
    process = subprocess.Popen(
        [*COMMAND, "emulator", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    serve.append(process)
    assert process.stdout is not None
    return banner_of(process.stdout)


def exported(banner: str, name: str) -> str:
    """The value the banner's export line gives ``name``."""
    return banner.split(f"{name}=", 1)[1].split()[0]


async def count_opportunities(url: str, lead: str) -> int:
    async with lsq.Session("demo-access-key", "demo-secret-key", host=url) as session:
        return len(await session.opportunities_of_lead(lead).collect())


def test_emulator_on_all_interfaces_prints_a_loopback_url_the_client_accepts(
    serve: list[subprocess.Popen[str]], env: dict[str, str], tmp_path: Path
) -> None:
    """--host 0.0.0.0 says it listens on all interfaces and prints a loopback URL that works."""
    ids = tmp_path / "leads.txt"
    banner = start(serve, env, "--host", "0.0.0.0", *SMALL, "--lead-ids", str(ids))
    url = exported(banner, "LSQ_HOST")
    assert "all interfaces (0.0.0.0)" in banner
    assert url.startswith("http://127.0.0.1:")
    assert "0.0.0.0" not in url
    lead = ids.read_text().split()[1]  # the "one" lead
    assert asyncio.run(count_opportunities(url, lead)) == 1


def test_emulator_on_a_port_in_use_names_the_port(env: dict[str, str]) -> None:
    """A port that is taken ends the command at once with one line naming it, exit code 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("emulator", "--port", str(port), "--thousands", "3", env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"leadsq-async: error: port {port} on 127.0.0.1 is in use: "
        "choose another --port (0 picks a free one)\n"
    )
    assert result.stdout == ""


def test_emulator_data_with_invalid_json_names_the_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    """--data with a file that is not JSON is a usage error (exit 2) naming the file."""
    path = tmp_path / "mine.json"
    path.write_text('{"opportunities": ', encoding="utf-8")
    result = run("emulator", "--data", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"leadsq-async: error: Invalid value for '--data': {path} is not valid JSON "
        "(line 1, column 19: Expecting value)"
    )
    assert "Traceback" not in result.stderr


def test_emulator_takes_several_rate_limits(
    serve: list[subprocess.Popen[str]], env: dict[str, str], tmp_path: Path
) -> None:
    """--rate-limit repeats: every limit is enforced, and a refusal names the full one."""
    ids = tmp_path / "leads.txt"
    args = [*SMALL, "--lead-ids", str(ids), "--rate-limit", "1/60", "--rate-limit", "5/86400"]
    banner = start(serve, env, *args)
    assert "rate limits 1 call per minute, 5 calls per day" in banner
    assert exported(banner, "LSQ_RATE_LIMIT") == "1/60"
    url = exported(banner, "LSQ_HOST")
    lead = ids.read_text().split()[1]
    policy = lsq.RetryPolicy(attempts=1)

    async def twice() -> str:
        async with lsq.Session(
            "demo-access-key", "demo-secret-key", host=url, retry=policy
        ) as session:
            await session.opportunities_of_lead(lead).collect()
            with pytest.raises(lsq.RateLimitError) as refused:
                await session.opportunities_of_lead(lead).collect()
        return str(refused.value)

    assert "API calls exceeded the limit of 1 in 60 second(s)" in asyncio.run(twice())


def test_emulator_refuses_a_bad_rate_limit_naming_the_flag(env: dict[str, str]) -> None:
    """A malformed --rate-limit is a usage error about --rate-limit."""
    result = run("emulator", "--rate-limit", "25/5", "--rate-limit", "lots", env=env)
    assert result.returncode == 2
    assert "Invalid value for '--rate-limit': invalid rate limit 'lots'" in result.stderr


def test_banner_for_one_limit_keeps_its_words() -> None:
    """With the default single limit the banner reads as before: URL, limit, keys, export line."""
    data = Dataset.generate(thousands=3, hundreds=3, other_leads=0)
    running = RunningEmulator("http://127.0.0.1:8000", EmulatorApp(data))
    banner = _banner(running, "127.0.0.1", data, EmulatorConfig(), None)
    assert banner.startswith("LeadSquared emulator listening on http://127.0.0.1:8000\n")
    assert "; rate limit 25 calls per 5 s\n" in banner
    assert "LSQ_RATE_LIMIT=25/5\n" in banner


def test_demo_counts_one_lead_in_the_singular_and_lists_every_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    """demo --leads 1 speaks of "1 lead", and its list of files names failed.jsonl too."""
    out = tmp_path / "demo"
    result = run("demo", "--leads", "1", "--rate-limit", "50/0.5", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "Crawling 1 lead of the built-in emulator, with its activities" in result.stderr
    assert "Crawled 1 lead in " in result.stdout
    assert "1 leads" not in result.stdout + result.stderr
    files = result.stdout.split(f"Files in {out}:\n", 1)[1].splitlines()[0]
    listed = [name.strip() for name in files.split(",")]
    assert "failed.jsonl" in listed
    # Every file but the hidden lock, which is the crawl's, not the user's.
    shown = [path.name for path in out.iterdir() if not path.name.startswith(".")]
    assert sorted(listed) == sorted(shown)
    assert json.loads((out / "checkpoint.jsonl").read_text().splitlines()[0])


def test_demo_bar_draws_its_done_part_in_green_not_red() -> None:
    """The done part of every progress bar (the demo's included) is green, not rich's red."""
    console = Console(force_terminal=True, theme=BAR_THEME)
    assert DEFAULT_STYLES["bar.complete"].color is not None
    assert DEFAULT_STYLES["bar.complete"].color.name == "rgb(249,38,114)"  # rich's red
    assert console.get_style("bar.complete") == console.get_style("green")
    assert console.get_style("bar.finished") == console.get_style("green")


def test_the_cli_imports_nothing_private_from_testing() -> None:
    """No module of leadsq_async.cli imports a private module or name of leadsq_async.testing."""
    cli = Path(lsq.__file__).parent / "cli"
    for module in cli.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "leadsq_async.testing._" not in text, module.name
        for line in text.splitlines():
            if line.startswith("from leadsq_async.testing import"):
                assert " _" not in line.split("import", 1)[1], module.name
