"""The documentation's code runs, and its reference covers every public name.

Every ```python block of every page in docs/ is a complete program, run with the
interpreter in a directory of its own against the ``lsq_emulator`` fixture's
server, with the variables the guides use:

- ``LSQ_HOST``, ``LSQ_ACCESS_KEY``, ``LSQ_SECRET_KEY`` and ``LSQ_RATE_LIMIT``:
  the emulator (its rate limit made short, so that the blocks run fast);
- ``LSQ_LEAD_ID`` and ``LSQ_LEADS_FILE``: as the quickstart's ``export`` line sets
  them, with the ``leads.txt`` that ``leadsq-async emulator --lead-ids leads.txt`` writes
  (the command is run once for the session); a page that offers a smaller file for its
  long examples (``tail -n 10 leads.txt > few-leads.txt`` and ``export
  LSQ_LEADS_FILE=few-leads.txt``) has its blocks run with that file, made by that command;
- ``REDIS_URL``: the test Redis server, for the blocks that name Redis (they
  are skipped when it is down, and fail instead when ``CI`` is set).

How a block is run depends on what it is:

- every Python block runs: a guide holds no fragment that could drift;
- a block whose first line is a comment naming a file (``# crawl_worker.py``) is
  written under that name for the page's other blocks to use; it is run itself
  only if it does not read ``sys.argv`` (a script that needs arguments is run
  by another block);
- a block that defines ``test_`` functions is run with pytest, where the
  ``lsq_emulator`` fixture is available;
- any other block is run as ``python block.py``.

A block runs within a minute at the quickstart's 25 calls per 5 seconds (it sends
at most `MINUTE_OF_REQUESTS` requests), or its page offers the smaller file. A comment
saying what the block prints with the page's file (``this prints: 7 page spans``), or
after a print at the top of the block (``print(plan)  # 10 calls per 5 s``), is checked
against the lines it prints.

A block that includes a file (``--8<-- "examples/worker.py"``) shows code that
``tests/services/test_examples.py`` runs, and is skipped here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from docs_fixtures import RUN_TIMEOUT, QuickstartFiles

import leadsq_async as lsq
import leadsq_async.journal
import leadsq_async.testing
from leadsq_async._records import _API_KEY
from leadsq_async.testing import Dataset, RunningEmulator

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Fast enough that the blocks take a second or two, slow enough to be a real limit.
RATE_LIMIT = "50/0.5"
#: The requests the quickstart's rate limit (25 calls per 5 s) lets through in a minute.
MINUTE_OF_REQUESTS = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
_FILE_NAME = re.compile(r"#\s*(?P<name>[\w.-]+\.py)\s*$")
_TEST_FUNCTION = re.compile(r"^(async )?def test_\w+\(", re.MULTILINE)
#: A page's smaller leads file: the command that makes it, and its export.
_SMALL_FILE_COMMAND = re.compile(r"`(?P<command>[^`]*> *(?P<file>[\w.-]+))`")
_SMALL_FILE_EXPORT = re.compile(r"`export LSQ_LEADS_FILE=(?P<file>[\w.-]+)`")
#: What a block says it prints: ``this prints: TEXT`` in a comment, to the line's end.
_PRINTS = re.compile(r"this prints: (?P<text>.+?)\s*$", re.MULTILINE)
#: What a print at the top of a block prints, said after it: ``print(plan)  # 10 calls per 5 s``.
_PRINT_COMMENT = re.compile(r"^print\([^#]*\)  # (?P<text>.+?)\s*$", re.MULTILINE)


@attrs.frozen
class Block:
    """One ```python block of a page."""

    page: str
    number: int
    line: int
    code: str

    @property
    def file_name(self) -> str | None:
        """The name the block gives itself in a first-line comment, if any."""
        first = self.code.split("\n", 1)[0]
        match = _FILE_NAME.fullmatch(first.strip())
        return match["name"] if match else None

    @property
    def is_include(self) -> bool:
        """Whether the block only includes a file of the repository."""
        return self.code.lstrip().startswith("--8<--")

    @property
    def id(self) -> str:
        """The test id: page, block number and line."""
        return f"{self.page}:{self.number}:L{self.line}"


def fenced_blocks(page: Path) -> Iterator[tuple[str, int, list[tuple[int, str]]]]:
    """Each fenced block of ``page``: its language, the line of its opening fence, and its
    lines with their numbers, less the fence's indent."""
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, indent, start = opening["fence"], opening["indent"], index
        body: list[tuple[int, str]] = []
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            text = line[len(indent) :] if line.startswith(indent) else line.lstrip()
            body.append((index + 1, text))
            index += 1
        index += 1
        yield opening["info"].strip().split(" ", 1)[0].lower(), start, body


def read_blocks(page: Path) -> list[Block]:
    """Every ```python block of ``page``, in order."""
    name = page.relative_to(DOCS).as_posix()
    blocks: list[Block] = []
    for language, line, body in fenced_blocks(page):
        if language in ("python", "py"):
            code = "\n".join(text for _, text in body) + "\n"
            blocks.append(Block(page=name, number=len(blocks) + 1, line=line, code=code))
    return blocks


def all_pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.rglob("*.md"))


def runnable_blocks() -> list[Any]:
    """A test parameter per block that runs as a program of its own.

    Scripts that another block of the page runs (they read ``sys.argv``) are
    not programs of their own: they run inside the block that starts them.
    """
    return [
        pytest.param(block, id=block.id)
        for page in all_pages()
        for block in read_blocks(page)
        if not block.is_include and not (block.file_name and "sys.argv" in block.code)
    ]


def needs_redis(block: Block, files: dict[str, str]) -> bool:
    """Whether the block, or a file of its page it runs, talks to Redis."""
    if "Redis" in block.code or "REDIS_URL" in block.code:
        return True
    return any(name in block.code and "Redis" in code for name, code in files.items())


def page_leads_file(page: str, directory: Path, quickstart: QuickstartFiles) -> str:
    """The leads file the page's blocks run with, made in ``directory``: the page's smaller
    file by the page's command if it offers one, else the quickstart's."""
    shutil.copy(quickstart.directory / quickstart.leads_file, directory / quickstart.leads_file)
    text = (DOCS / page).read_text(encoding="utf-8")
    export = _SMALL_FILE_EXPORT.search(text)
    if export is None:
        return quickstart.leads_file
    [command] = [
        match["command"]
        for match in _SMALL_FILE_COMMAND.finditer(text)
        if match["file"] == export["file"]
    ]
    subprocess.run(command, shell=True, cwd=directory, check=True)
    return export["file"]


def quickstart_environment(
    emulator: RunningEmulator, quickstart: QuickstartFiles
) -> dict[str, str]:
    """The quickstart's exports, pointed at ``emulator`` and at the suite's fast limit."""
    return {
        "LSQ_HOST": emulator.url,
        "LSQ_ACCESS_KEY": emulator.access_key,
        "LSQ_SECRET_KEY": emulator.secret_key,
        "LSQ_RATE_LIMIT": RATE_LIMIT,
        "LSQ_LEAD_ID": quickstart.lead_id,
        "LSQ_LEADS_FILE": quickstart.leads_file,
    }


def guide_environment(
    emulator: RunningEmulator,
    directory: Path,
    redis_url: str | None,
    quickstart: QuickstartFiles,
    leads_file: str,
) -> dict[str, str]:
    """The variables the guides read, pointing at ``emulator``."""
    return {
        **os.environ,
        **quickstart_environment(emulator, quickstart),
        "LSQ_LEADS_FILE": leads_file,
        **({"REDIS_URL": redis_url} if redis_url else {}),
        # dlt keeps its pipelines in the block's directory, and sends no telemetry.
        "DLT_DATA_DIR": str(directory / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.parametrize("block", runnable_blocks())
def test_block_runs(
    block: Block,
    lsq_emulator: RunningEmulator,
    quickstart: QuickstartFiles,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The block runs to the end against the emulator with its page's leads file, within a
    minute of the quickstart's rate limit, prints what it says it prints, and shows no
    secret key."""
    calls, period = RATE_LIMIT.split("/")
    lsq_emulator.config.rate_limit_calls = int(calls)
    lsq_emulator.config.rate_limit_period = float(period)
    files = {
        other.file_name: other.code for other in read_blocks(DOCS / block.page) if other.file_name
    }
    # Skips when Redis is down, and fails in CI, where it must run.
    redis_url = request.getfixturevalue("redis_url") if needs_redis(block, files) else None
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    script = tmp_path / (block.file_name or "block.py")
    script.write_text(block.code, encoding="utf-8")
    if _TEST_FUNCTION.search(block.code):
        script = script.rename(tmp_path / f"test_{script.name.removeprefix('test_')}")
        command = [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--rootdir", str(tmp_path), "-o", "asyncio_mode=auto", "-W", "error"),
            *("-o", "asyncio_default_fixture_loop_scope=function", script.name),
        ]
    else:
        command = [sys.executable, "-W", "error", script.name]
    leads_file = page_leads_file(block.page, tmp_path, quickstart)

    completed = subprocess.run(
        command,
        cwd=tmp_path,
        env=guide_environment(lsq_emulator, tmp_path, redis_url, quickstart, leads_file),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{block.id} failed:\n{output}"
    left_behind = (
        "Exception ignored",
        "was never awaited",
        "Task was destroyed",
        "error occurred during closing of asynchronous generator",
    )
    for sign in left_behind:
        assert sign not in output, f"{block.id} left something behind:\n{output}"
    assert lsq_emulator.secret_key not in output, f"{block.id} shows the secret key"
    printed = completed.stdout.splitlines()
    for said in [*_PRINTS.finditer(block.code), *_PRINT_COMMENT.finditer(block.code)]:
        assert said["text"] in printed, f"{block.id} says it prints {said['text']!r}:\n{output}"
    requests = lsq_emulator.stats.accepted
    assert requests <= MINUTE_OF_REQUESTS, (
        f"{block.id} sends {requests} requests with {leads_file}, more than a minute's at 25/5:"
        " its page should say how long it takes and offer a smaller leads file"
    )


def _reference_targets() -> set[str]:
    targets = set()
    for page in (DOCS / "reference").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("::: "):
                targets.add(line.removeprefix("::: ").strip())
    return targets


def test_reference_documents_every_public_name() -> None:
    """Each name in leadsq_async.__all__ and leadsq_async.testing.__all__ has a ::: entry."""
    expected = {f"leadsq_async.{name}" for name in lsq.__all__}
    expected |= {f"leadsq_async.testing.{name}" for name in leadsq_async.testing.__all__}
    expected |= {f"leadsq_async.journal.{name}" for name in leadsq_async.journal.__all__}
    assert expected - _reference_targets() == set()


_TYPE_NAMES = {
    str: "str",
    str | None: "str | None",
    bool | None: "bool | None",
    int | None: "int | None",
    float | None: "float | None",
    datetime | None: "datetime | None",
}


_TABLE_ROW = re.compile(r"\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|\s*`([^`]+)`\s*\|")


def _guide_table(heading: str) -> dict[str, tuple[str, str]]:
    """attribute -> (row key, type) from the table under ``heading`` in records.md."""
    text = (DOCS / "records.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    return {
        match[1]: (match[2], match[3])
        for match in map(_TABLE_ROW.fullmatch, section.splitlines())
        if match is not None
    }


@pytest.mark.parametrize(
    ("heading", "cls"),
    [("### Opportunity", lsq.Opportunity), ("### Activity", lsq.Activity)],
)
def test_records_guide_lists_every_typed_field(heading: str, cls: type[Any]) -> None:
    """The guide's table gives each typed attribute with its row key and type."""
    hints = typing.get_type_hints(cls)
    expected = {
        field.name: (field.metadata[_API_KEY], _TYPE_NAMES[hints[field.name]])
        for field in attrs.fields(cls)
        if _API_KEY in field.metadata
    }
    assert _guide_table(heading) == expected


def test_quickstart_names_the_emulators_big_lead() -> None:
    """The lead id the quickstart exports is the seed-0 emulator's lead with thousands."""
    lead = Dataset.generate(seed=0).leads_by_shape["thousands"]
    assert f"LSQ_LEAD_ID={lead}" in (DOCS / "quickstart.md").read_text(encoding="utf-8")


def test_the_quickstarts_leads_file_names_the_emulators_leads(
    quickstart: QuickstartFiles, lsq_emulator: RunningEmulator
) -> None:
    """The leads.txt the quickstart's command writes holds every lead of the emulator the
    blocks run against, in its order: the blocks see what a reader sees."""
    written = (quickstart.directory / quickstart.leads_file).read_text(encoding="utf-8")
    assert written.splitlines() == list(lsq_emulator.data.opportunities)


#: The figures of a leads.txt: "`leads.txt` (26 leads, 2,853 opportunities and 5,980 activities".
_DATA_FIGURES = re.compile(
    r"(?P<leads>\d[\d,]*) leads, (?P<opportunities>\d[\d,]*) opportunities"
    r"(?:,? and |, )?(?:(?P<activities>\d[\d,]*) activities)?"
)


def test_the_pages_figures_of_the_quickstarts_data_are_the_emulators(
    quickstart: QuickstartFiles,
) -> None:
    """The banner the quickstart shows is the one its command prints, and every page that
    counts the leads, opportunities and activities of its leads.txt gives the same figures."""
    [served] = [line for line in quickstart.banner.splitlines() if " leads, " in line]
    assert served in (DOCS / "quickstart.md").read_text(encoding="utf-8").splitlines()
    expected = _DATA_FIGURES.search(served)
    assert expected is not None
    figures = {name: value.replace(",", "") for name, value in expected.groupdict().items()}
    found = 0
    for page in all_pages():
        text = " ".join(page.read_text(encoding="utf-8").split())
        for match in re.finditer(r"`leads\.txt` \(" + _DATA_FIGURES.pattern, text):
            found += 1
            for name, value in match.groupdict().items():
                if value is not None:
                    assert value.replace(",", "") == figures[name], f"{page.name}: {match[0]}"
    assert found >= 3


def test_cli_md_shows_the_lines_the_emulator_prints_to_paste(quickstart: QuickstartFiles) -> None:
    """The export and crawl lines cli.md says the emulator prints are the ones it prints for
    ``--lead-ids leads.txt`` (its URL aside)."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    section = text.split("## Serving the emulator: `emulator`", 1)[1]
    shown = section.split("ready to paste:\n\n```console\n", 1)[1].split("```", 1)[0]
    url = re.search(r"listening on (\S+)", quickstart.banner)
    assert url is not None
    printed = [line.strip() for line in quickstart.banner.replace(url[1], "URL").splitlines()]
    for line in shown.replace("http://127.0.0.1:8000", "URL").splitlines():
        assert line in printed, quickstart.banner


def test_every_python_block_keeps_to_the_projects_line_length() -> None:
    """No line of a page's Python over 100 characters (ruff's line-length for the code):
    the theme then shows it with at most a short scroll."""
    long_lines = [
        f"{block.id}: {line}"
        for page in all_pages()
        for block in read_blocks(page)
        for line in block.code.splitlines()
        if len(line) > 100
    ]
    assert long_lines == []
