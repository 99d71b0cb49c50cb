"""The command line's shape: short commands, no import loop, only public names and leaves."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import click

import leadsq_async.cli
from leadsq_async.cli._app import cli

CLI_DIR = Path(leadsq_async.cli.__file__).parent
#: What the CLI may import from the package: public modules and the leaf modules.
ALLOWED = {
    "leadsq_async",
    "leadsq_async.journal",
    "leadsq_async.testing",
    "leadsq_async.dlt",
    "leadsq_async.arq",
    "leadsq_async._limits",
    "leadsq_async._secrets",
    "leadsq_async._hosts",
}


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, lazy imports included, relative ones made absolute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(
                    f"leadsq_async.cli.{node.module}" if node.module else "leadsq_async.cli"
                )
            else:
                assert node.module is not None
                found.append(node.module)
    return found


def test_no_command_function_is_over_80_lines() -> None:
    def commands(group: click.Group) -> list[click.Command]:
        found: list[click.Command] = [group]
        for command in group.commands.values():
            found += commands(command) if isinstance(command, click.Group) else [command]
        return found

    every = commands(cli)
    assert {"crawl", "load", "opportunities", "activities", "probe"} <= {c.name for c in every}
    for command in every:
        assert command.callback is not None
        source = inspect.getsource(command.callback).splitlines()
        # From its def line: the options' decorators above it are not the function.
        lines = len(source) - next(n for n, line in enumerate(source) if line.startswith("def "))
        assert lines <= 80, (command.name, lines)


def test_the_cli_imports_only_public_modules_and_the_leaf_modules() -> None:
    for path in sorted(CLI_DIR.glob("*.py")):
        for module in _imports(path):
            if module.startswith("leadsq_async") and not module.startswith("leadsq_async.cli"):
                assert module in ALLOWED, (path.name, module)


def test_without_click_the_hint_is_an_install_that_works_from_a_clone() -> None:
    """The package is not on PyPI yet: the hint installs the extra from the clone."""
    code = "import sys; sys.modules['click'] = None\nfrom leadsq_async.cli import main\nmain([])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr == (
        "leadsq-async: error: the command line needs click: "
        'pip install -e ".[cli]" in your clone of leadsq-async\n'
    )
