"""The pages a newcomer meets first: install lines that work, a first example that fits."""

from __future__ import annotations

import re
from pathlib import Path

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
