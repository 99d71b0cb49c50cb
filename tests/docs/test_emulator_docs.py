"""docs/testing.md's pytest examples, run the way a user runs them: copied into a directory
of their own and run by ``python -m pytest`` in a subprocess, with only the plugins the
``testing`` extra installs and no configuration but what the page tells to write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_BLOCK = re.compile(r"^```(?P<language>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
_TEST = re.compile(r"^(?:async )?def (test_\w+)\(", re.MULTILINE)


def blocks(language: str) -> list[str]:
    """The page's fenced blocks of ``language``, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return [m["code"] for m in _BLOCK.finditer(text) if m["language"] == language]


def page_tests() -> dict[str, str]:
    """File name -> code, for each Python block of the page that defines tests."""
    return {
        f"test_page_{number}.py": code
        for number, code in enumerate(blocks("python"), 1)
        if _TEST.search(code)
    }


def run_pytest(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``directory``, as a user would run it there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LSQ_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )


def expected_tests(files: dict[str, str]) -> int:
    return sum(len(_TEST.findall(code)) for code in files.values())


def test_the_page_has_async_pytest_examples() -> None:
    """The page shows async tests, and one configuration block for pytest."""
    files = page_tests()
    assert expected_tests(files) >= 5
    assert any("async def test_" in code for code in files.values())
    assert len(blocks("toml")) == 1


def test_examples_pass_as_written_with_no_configuration(tmp_path: Path) -> None:
    """Copied as they are into a directory with no pytest configuration, every example passes."""
    files = page_tests()
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    result = run_pytest(tmp_path, "-q", "--rootdir", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{expected_tests(files)} passed" in output, output
    assert "skipped" not in output, output


def test_the_pages_auto_mode_runs_tests_without_marks(tmp_path: Path) -> None:
    """With the page's pyproject.toml block, an example passes without its asyncio mark, and
    pytest-asyncio has nothing to warn about."""
    (tmp_path / "pyproject.toml").write_text(blocks("toml")[0], encoding="utf-8")
    # The in-process example: it needs no server, so this run stays short.
    [code] = [code for code in page_tests().values() if "spent_daily_quota" in code]
    unmarked = code.replace("@pytest.mark.asyncio\n", "")
    assert "mark.asyncio" not in unmarked
    (tmp_path / "test_unmarked.py").write_text(unmarked, encoding="utf-8")
    result = run_pytest(tmp_path, "-q", "-W", "error::pytest.PytestDeprecationWarning")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 passed" in output, output
    assert "warning" not in output.lower(), output


def test_the_extra_installs_what_the_examples_need() -> None:
    """The ``testing`` extra requires pytest and pytest-asyncio (and uvicorn for the server)."""
    from importlib.metadata import requires

    wanted = {"uvicorn", "pytest", "pytest-asyncio"}
    required = {
        re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0]
        for requirement in requires("leadsq-async") or []
        if "extra == 'testing'" in requirement.replace('"', "'")
    }
    assert wanted <= required
