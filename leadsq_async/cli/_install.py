"""How the command line names the install of an extra it needs (a leaf: no import)."""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """How to install an extra, in the form that works before the first release: from the
    clone (``-e`` keeps it editable); after the release it reads ``pip install
    "leadsq-async[EXTRA]"``."""
    return f'pip install -e ".[{extra}]" in your clone of leadsq-async'
