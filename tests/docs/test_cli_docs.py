"""The pages a newcomer meets first: install lines that work, a first example that fits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadsq_async.cli._app import main
from leadsq_async.testing import RunningEmulator

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: An install of the package by its name, which fails until it is on PyPI.
_BY_NAME = re.compile(r"pip install\s+['\"]?leadsq-async\b")


def test_every_install_line_works_from_a_clone() -> None:
    """Until a release, pip cannot find leadsq-async by name: the pages install the clone
    (or a wheel), and say once, on the install page, how it will read after the release."""
    for page in sorted(DOCS.rglob("*.md")):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if _BY_NAME.search(line) and "once the package is published" not in line.lower():
                raise AssertionError(f"{page.name}:{number}: {line}")


def test_the_web_backend_example_names_every_package_it_needs() -> None:
    page = (DOCS / "processes.md").read_text(encoding="utf-8")
    assert "from starlette" in page
    assert re.search(r"pip install -e \"\.\[redis\]\" starlette uvicorn", page)


def test_the_index_pages_first_code_block_fits_the_page() -> None:
    """80 columns: the width of the theme's code block on a laptop, without a scroll bar."""
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    block = text.split("```", 2)[1].split("\n", 1)[1]
    assert max(len(line) for line in block.splitlines()) <= 80


def test_a_failed_ids_line_is_the_one_cli_md_describes(
    lsq_emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A lead that fails prints ``leadsq-async: error: lead ID: ...``, ending with the
    endpoint and ``leadId=ID`` as the page's example shows them."""
    page = " ".join((DOCS / "cli.md").read_text(encoding="utf-8").split())
    start = re.search(r"the command prints `(leadsq-async: error: lead ID: )\.\.\.`", page)
    end = re.search(r"such as `(\(OpportunityManagement\.svc/\w+, leadId=ID\))`", page)
    assert start is not None
    assert end is not None
    for name, value in [
        ("LSQ_HOST", lsq_emulator.url),
        ("LSQ_ACCESS_KEY", lsq_emulator.access_key),
        ("LSQ_SECRET_KEY", lsq_emulator.secret_key),
    ]:
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LSQ_RATE_LIMIT", raising=False)
    assert main(["opportunities", "no-such-lead"]) == 1
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith(start[1].replace("ID", "no-such-lead")), line
    assert line.endswith(end[1].replace("ID", "no-such-lead")), line
