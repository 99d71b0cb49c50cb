"""The pure modules load without httpx, the limiter or an event loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import leadsq_async

PACKAGE = Path(leadsq_async.__file__).parent

# Loads one module of the package with the package's __init__ left out (a bare
# module object stands for the package), so what ends up loaded is the module's
# own imports and theirs, nothing the facade pulls in.
LOADER = """
import importlib, json, sys, types
package = types.ModuleType("leadsq_async")
package.__path__ = [sys.argv[1]]
sys.modules["leadsq_async"] = package
importlib.import_module("leadsq_async." + sys.argv[2])
print(json.dumps(sorted(sys.modules)))
"""


def loaded(module: str) -> list[str]:
    """The modules loaded by importing ``module`` of the package alone, in a new process."""
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(PACKAGE), module],
        capture_output=True,
        text=True,
        check=True,
    )
    names: list[str] = json.loads(done.stdout)
    return names


FORBIDDEN = ("httpx", "httpcore", "asyncio", "leadsq_async._ratelimit", "leadsq_async._transport")


@pytest.mark.parametrize("module", ["_request", "_decode", "_secrets", "_hosts", "_walk_rules"])
def test_a_pure_module_loads_without_the_client_the_limiter_or_asyncio(module: str) -> None:
    """Importing the module alone loads neither httpx, asyncio nor the limiter or transport."""
    names = loaded(module)
    assert f"leadsq_async.{module}" in names
    assert not [name for name in names if name.split(".")[0] in FORBIDDEN or name in FORBIDDEN]


@pytest.mark.parametrize("module", ["_secrets", "_hosts"])
def test_a_leaf_module_imports_nothing_from_the_package(module: str) -> None:
    """The CLI and the dlt source may import `_secrets` and `_hosts`: they import no sibling."""
    ours = [name for name in loaded(module) if name.startswith("leadsq_async.")]
    assert ours == [f"leadsq_async.{module}"]
