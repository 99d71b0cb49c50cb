"""The fixture of the documentation tests that makes what the quickstart tells a reader to
make (a plugin of tests/conftest.py, as cli_fixtures is): its emulator command, run once a
session, whose ``leads.txt`` and banner every doc page's tests use."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: How long a command of the docs may take (the quickstart's emulator to print its banner).
RUN_TIMEOUT = 120
#: The quickstart's export of the lead and the leads file the guides use.
QUICKSTART_EXPORT = re.compile(
    r"^export LSQ_LEAD_ID=(?P<lead>\S+) LSQ_LEADS_FILE=(?P<file>\S+)$", re.MULTILINE
)


@attrs.frozen
class QuickstartFiles:
    """What the quickstart tells a reader to make: the emulator's ``leads.txt`` and banner,
    and the lead and leads file its ``export`` line names."""

    directory: Path
    banner: str
    lead_id: str
    leads_file: str


def run_quickstart(directory: Path) -> QuickstartFiles:
    """``leadsq-async emulator --lead-ids leads.txt`` run in ``directory`` as the quickstart
    says (on a free port), stopped once it has written the file and printed its banner (the
    ``quickstart`` fixture below)."""
    text = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    export = QUICKSTART_EXPORT.search(text)
    command = re.search(r"^\$ leadsq-async (emulator .*)$", text, re.MULTILINE)
    assert export is not None
    assert command is not None
    process = subprocess.Popen(
        [sys.executable, "-m", "leadsq_async.cli", *shlex.split(command[1]), "--port", "0"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    banner = []
    # A command that never prints its banner is killed, rather than hang the session.
    watchdog = threading.Timer(RUN_TIMEOUT, process.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    return QuickstartFiles(directory, "".join(banner), export["lead"], export["file"])


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> QuickstartFiles:
    """The quickstart's ``leads.txt`` and banner, from its emulator command run once a session."""
    return run_quickstart(tmp_path_factory.mktemp("quickstart"))
