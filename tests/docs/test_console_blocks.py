"""The pages' console commands run as written, with the pages' files.

Every line of a page's ```console (or ```sh) block is either run here or listed in
`NOT_RUN` with the reason, so that a command added to a page fails
`test_every_console_command_is_run_or_listed` until it is one or the other. Output is not a
command: in a block whose commands start with ``$ ``, the other lines; and the
``leadsq-async: ...`` messages the pages show.

A ``leadsq-async`` command runs in process (`leadsq_async.cli._app.main`), in a directory
of its own holding the page's files: the quickstart's ``leads.txt`` and, where the page
offers it, ``few-leads.txt`` made by the page's ``tail`` command. Its environment is the
quickstart's ``export`` lines pointed at the ``lsq_emulator`` fixture, whose names
`test_the_emulators_exports_are_what_the_commands_run_with` checks; a ``NAME=value`` before
the command is set too. These changes keep the run short and the suite's Redis clean, and
only these:

- a rate limit per seconds the command gives (``--rate-limit 10/5``, ``LSQ_RATE_LIMIT=...``)
  is the suite's fast `RATE_LIMIT`, as for the Python blocks (a daily quota is kept);
- ``leadsq-async demo``, which serves its own emulator and crawls it for about 30 s at
  25/5, keeps to `RATE_LIMIT` for about `DEMO_SECONDS`;
- a ``crawl`` or ``load`` of ``leads.txt`` ``--with-activities`` (some 2,900 requests, about
  10 minutes at the quickstart's limit) runs on ``few-leads.txt``: the page offers that
  file for it, or, if it does not, must say how long the command takes, and the test makes
  the file as the other pages do (its last ten leads);
- ``enqueue`` puts its jobs on the suite's Redis (the ``redis_url`` fixture, as the
  command's default is) but on a queue of the test's own, deleted after it.

Each command exits with code 0 and shows no secret key.
"""

from __future__ import annotations

import os
import re
import shlex
import uuid
from pathlib import Path

import attrs
import pytest
import redis
from docs_fixtures import QuickstartFiles
from test_docs import (
    DOCS,
    MINUTE_OF_REQUESTS,
    RATE_LIMIT,
    all_pages,
    fenced_blocks,
    page_leads_file,
    quickstart_environment,
)

from leadsq_async.cli._app import cli, main
from leadsq_async.testing import RunningEmulator

_CONSOLE = ("console", "sh", "bash", "shell")
#: How long ``leadsq-async demo`` crawls here, rather than its default 30 s.
DEMO_SECONDS = 1.0

INSTALL = "installs the package: the suite runs in an environment where it is installed"
REAL = "against a real account: the block's export names api-in21 and `...` keys"
CRON = "a cron line, against a real account"
EXAMPLE = "runs a file of examples/, which tests/services/test_examples.py runs"
FIXTURE = "serves until Ctrl-C: the `quickstart` fixture runs it (with --port 0) for leads.txt"
#: The quickstart's emulator environment, which the commands here run with (pointed at the
#: test's emulator): see test_the_emulators_exports_are_what_the_commands_run_with.
ENVIRONMENT = "the emulator's environment, which every command here runs with"

#: Every console line of the pages that is not run, with the reason.
NOT_RUN: dict[str, str] = {
    # Installs and the clone
    "cd leadsq-async": "the clone: the suite runs in it",
    "python3 -m venv .venv && . .venv/bin/activate": INSTALL,
    'python -m pip install -e ".[cli]"': INSTALL,
    "python -m pip install -e .": INSTALL,
    'python -m pip install -e ".[testing]"': INSTALL,
    'python -m pip install -e ".[redis]"': INSTALL,
    'python -m pip install -e ".[prometheus]"': INSTALL,
    'python -m pip install -e ".[otel]"': INSTALL,
    'python -m pip install -e ".[dlt]"': INSTALL,
    'python -m pip install -e ".[arq]"': INSTALL,
    'python -m pip install -e ".[all]"': INSTALL,
    "python -m pip install build && python -m build": INSTALL,
    'python -m pip install "leadsq_async-0.1.0-py3-none-any.whl[cli]"': INSTALL,
    "python -m pip install -e . starlette uvicorn": INSTALL,
    'python3 -m pip install -e ".[dlt]"': INSTALL,
    'python3 -m pip install "dlt[postgres]"': INSTALL,
    # The emulator, and its environment
    "leadsq-async emulator --lead-ids leads.txt": FIXTURE,
    "leadsq-async emulator --port 8000 --lead-ids leads.txt": FIXTURE,
    "export LSQ_HOST=http://127.0.0.1:8000 LSQ_ACCESS_KEY=demo-access-key"
    " LSQ_SECRET_KEY=demo-secret-key LSQ_RATE_LIMIT=25/5": ENVIRONMENT,
    "export LSQ_LEAD_ID=bc3548c5-5d46-49ba-b777-40fcc70312b9 LSQ_LEADS_FILE=leads.txt": (
        ENVIRONMENT
    ),
    # A real account
    "export LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=... LSQ_HOST=api-in21.leadsquared.com": REAL,
    "export LSQ_HOST=api-in21.leadsquared.com LSQ_RATE_LIMIT=25/5": REAL,
    "export LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=...": REAL,
    "leadsq-async opportunities 69e1c27e-dd08-4b53-b509-f353ad1c7f4d": REAL,
    "leadsq-async opportunities --leads-file leads.txt --format csv --out opportunities.csv": (
        REAL
    ),
    "cut -f1 leads.tsv | leadsq-async opportunities -": REAL + ", and a leads.tsv of its own",
    "leadsq-async activities --opportunities-file opportunity-ids.txt --out activities.jsonl": (
        REAL + ", and an opportunity-ids.txt of its own"
    ),
    "leadsq-async probe --opportunity-type 12002 --activity-event 168": REAL,
    "leadsq-async probe --opportunity-type 12002 --day 2026-03-01 --json": REAL,
    "leadsq-async sync --opportunity-type 12002 --opportunity-type 12003 --since 2024-01-01": (
        REAL
    ),
    "leadsq-async sync --opportunity-type 12002 --opportunity-type 12003": REAL,
    "export LSQ_REDIS_URL=redis://redis.internal:6379/0": REAL + ": its Redis server",
    "export LSQ_POSTGRES_URL=postgresql://crawler@db.internal/crm": REAL + ": its database",
    "leadsq-async enqueue --leads-file leads.txt --batch 50": REAL + ", with its Redis server",
    "leadsq-async worker &": REAL + ", with its Redis and PostgreSQL",
    # Services the suite cannot give as written
    "leadsq-async worker --postgres postgresql://me@db/crm --jobs 2": (
        "needs PostgreSQL at db, and runs until stopped: tests/services/test_arq.py runs the worker"
    ),
    "DESTINATION__POSTGRES__CREDENTIALS=postgresql://loader:password@db:5432/warehouse "
    "leadsq-async load --leads-file leads.txt --with-activities --destination postgres "
    "--pipeline-name leadsquared_postgres": "needs PostgreSQL at db",
    "0 * * * *  leadsq-async sync --opportunity-type 12002 -q": CRON,
    "30 3 * * * leadsq-async sync --opportunity-type 12002 --reconcile -q": CRON,
    # Examples, and what they serve
    "python examples/web_backend.py --port 8080": EXAMPLE,
    "curl 'http://127.0.0.1:8080/leads/bc3548c5-5d46-49ba-b777-40fcc70312b9/opportunities"
    "?limit=3'": EXAMPLE + ": this asks the server it starts",
    "python examples/worker.py --leads-file leads.txt --out opportunities.jsonl"
    " --metrics-port 9100": EXAMPLE,
    "curl -s http://127.0.0.1:9100/metrics | grep leadsq_": EXAMPLE
    + ": this asks the server it starts",
    "export REDIS_URL=redis://127.0.0.1:6379/0": EXAMPLE + ", and test_docs.py the page's",
    "python examples/multiprocess_crawl.py --leads-file leads.txt --processes 4 --out crawl": (
        EXAMPLE
    ),
    # processes.md's loop of crawl_worker.py, which tests/docs/test_docs.py runs
    "for i in 0 1 2 3; do": REAL + ": crawl_worker.py, which test_docs.py runs",
    "python crawl_worker.py leads.txt $i 4 > opportunities-$i.jsonl &": REAL,
    "done": REAL,
    "wait": REAL,
    "export REDIS_URL=redis://:password@redis.internal:6379/0": REAL + ": its Redis server",
    "for i in 4 5 6 7; do python crawl_worker.py leads.txt $i 8 > opportunities-$i.jsonl & done": (
        REAL
    ),
}

#: The commands that request activities of every opportunity: thousands for leads.txt.
_WITH_ACTIVITIES = ("crawl", "load")
_LIMIT_PER_SECONDS = re.compile(r"\d+/\d+(\.\d+)?")
_ASSIGNMENT = re.compile(r"(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>.*)", re.DOTALL)


@attrs.frozen
class Command:
    """One command line of a console block: the text after any ``$ ``, its comment kept."""

    page: str
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:L{self.line}"


def console_commands(page: Path) -> list[Command]:
    """The command lines of ``page``'s console blocks (output and messages left out; a line
    ending in ``\\`` joined to the next)."""
    name = page.relative_to(DOCS).as_posix()
    commands: list[Command] = []
    for language, _, lines in fenced_blocks(page):
        if language not in _CONSOLE:
            continue
        body = [(number, text.strip()) for number, text in lines]
        prompted = any(text.startswith("$ ") for _, text in body)
        pending: tuple[int, str] | None = None
        for number, text in body:
            if pending is not None:
                number, text = pending[0], f"{pending[1]} {text}"
                pending = None
            if prompted and not text.startswith("$ "):
                continue
            text = text.removeprefix("$ ")
            if not text or text.startswith("leadsq-async:"):
                continue
            if text.endswith("\\"):
                pending = (number, text.removesuffix("\\").rstrip())
                continue
            commands.append(Command(name, number, text))
    return commands


def _without_comment(text: str) -> str:
    """The command without its ``# ...`` comment (the pages' commands quote no ``#``)."""
    return text.split("  #", 1)[0].strip()


def _key(text: str) -> str:
    """How `NOT_RUN` names a line: as written, without its comment."""
    return _without_comment(text)


def _is_leadsq(text: str) -> bool:
    """Whether the line runs ``leadsq-async``, maybe after ``NAME=value`` words."""
    words = shlex.split(_without_comment(text))
    return words[:1] == ["leadsq-async"] or bool(_leading_assignments(text))


def runnable() -> list[object]:
    """A test parameter per ``leadsq-async`` command not in `NOT_RUN`; a command on two pages
    (``leadsq-async demo``) runs once."""
    commands: dict[str, Command] = {}
    for page in all_pages():
        for command in console_commands(page):
            key = _key(command.text)
            if key not in NOT_RUN and _is_leadsq(command.text):
                commands.setdefault(key, command)
    return [pytest.param(command, id=command.id) for command in commands.values()]


def test_every_console_command_is_run_or_listed() -> None:
    """A console line is a ``leadsq-async`` command this test runs, or is listed in NOT_RUN
    with its reason; and every line listed is still on a page."""
    commands = [command for page in all_pages() for command in console_commands(page)]
    not_leadsq = [
        f"{command.id}: {command.text}"
        for command in commands
        if _key(command.text) not in NOT_RUN and not _is_leadsq(command.text)
    ]
    assert not_leadsq == [], "run these commands in this test, or list them in NOT_RUN"
    listed = {_key(command.text) for command in commands}
    assert set(NOT_RUN) - listed == set(), "NOT_RUN lists lines no page holds"


def _leading_assignments(text: str) -> dict[str, str]:
    """The ``NAME=value`` words before a ``leadsq-async`` command ({} if not one)."""
    words = shlex.split(_without_comment(text))
    assignments = {}
    for word in words:
        match = _ASSIGNMENT.fullmatch(word)
        if match is None:
            break
        assignments[match["name"]] = match["value"]
    rest = words[len(assignments) :]
    return assignments if assignments and rest[:1] == ["leadsq-async"] else {}


def _fast(limits: str) -> str:
    """``limits`` with every limit per seconds made the suite's fast one; a quota is kept."""
    return " ".join(
        RATE_LIMIT if _LIMIT_PER_SECONDS.fullmatch(limit) else limit for limit in limits.split()
    )


def test_the_emulators_exports_are_what_the_commands_run_with(
    lsq_emulator: RunningEmulator, quickstart: QuickstartFiles
) -> None:
    """Every variable the pages' emulator exports set, the commands here run with."""
    names = quickstart_environment(lsq_emulator, quickstart)
    exported = {
        assignment.split("=", 1)[0]
        for text, reason in NOT_RUN.items()
        if reason == ENVIRONMENT
        for assignment in shlex.split(text)[1:]
    }
    assert exported == set(names)


def _argv(
    command: Command, directory: Path, quickstart: QuickstartFiles
) -> tuple[list[str], dict[str, str]]:
    """The command's arguments after ``leadsq-async`` and the variables it sets, made short
    as the module says; the page's files written to ``directory``."""
    assignments = _leading_assignments(command.text)
    words = shlex.split(_without_comment(command.text))[len(assignments) + 1 :]
    variables = {
        name: _fast(value) if name == "LSQ_RATE_LIMIT" else value
        for name, value in assignments.items()
    }
    argv = [
        _fast(word) if previous == "--rate-limit" else word
        for previous, word in zip(["", *words], words, strict=False)
    ]
    leads_file = page_leads_file(command.page, directory, quickstart)
    if argv[0] in _WITH_ACTIVITIES and "--with-activities" in argv and "leads.txt" in argv:
        if leads_file == quickstart.leads_file:
            text = " ".join((DOCS / command.page).read_text(encoding="utf-8").split())
            assert re.search(r"about \d+ minutes", text), (
                f"{command.id} crawls leads.txt with activities: say how long it takes"
            )
            leads = (directory / leads_file).read_text(encoding="utf-8").splitlines()
            leads_file = "few-leads.txt"
            (directory / leads_file).write_text("\n".join([*leads[-10:], ""]), encoding="utf-8")
        argv[argv.index("leads.txt")] = leads_file
    return argv, variables


def _delete_queue(redis_url: str, queue: str) -> None:
    """Delete an arq queue and its jobs' keys (a job's id names its queue)."""
    with redis.Redis.from_url(redis_url) as client:
        ids = [job_id.decode() for job_id in client.zrange(queue, 0, -1)]
        client.delete(queue, *(f"arq:job:{job_id}" for job_id in ids))


@pytest.mark.parametrize("command", runnable())
def test_console_command_runs(
    command: Command,
    emulator: RunningEmulator,
    quickstart: QuickstartFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """The command runs as written against the emulator, in the quickstart's environment
    with its page's files, exits with code 0, stays within a minute of the quickstart's
    rate limit and shows no secret key."""
    argv, variables = _argv(command, tmp_path, quickstart)
    for name in [name for name in os.environ if name.startswith("LSQ_")]:
        monkeypatch.delenv(name)
    for name, value in {**quickstart_environment(emulator, quickstart), **variables}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.chdir(tmp_path)
    if argv[0] == "demo":
        # The demo serves its own emulator, at its --rate-limit for about --seconds (30).
        for param in cli.commands["demo"].params:
            fast = {"rate_limit": RATE_LIMIT, "seconds": DEMO_SECONDS}
            if param.name in fast:
                monkeypatch.setattr(param, "default", fast[param.name])

    queue = f"lsq-test-console:{uuid.uuid4().hex}"
    if argv[0] == "enqueue":
        # The suite's Redis (skips when it is down, fails in CI), on a queue of the test's own.
        monkeypatch.setenv("LSQ_REDIS_URL", request.getfixturevalue("redis_url"))
        monkeypatch.setenv("LSQ_QUEUE", queue)
    try:
        code = main(argv)
    finally:
        if argv[0] == "enqueue":
            _delete_queue(os.environ["LSQ_REDIS_URL"], queue)

    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 0, f"{command.id}: {command.text} exits with {code}:\n{output}"
    assert emulator.secret_key not in output, f"{command.id} shows the secret key"
    assert emulator.stats.accepted <= MINUTE_OF_REQUESTS, (command.id, argv)
