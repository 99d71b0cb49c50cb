"""The feeds guide's table of Lead fields is the Lead class's, field by field."""

from __future__ import annotations

import re
import typing
from datetime import datetime
from pathlib import Path

import attrs

import leadsq_async as lsq
from leadsq_async._records import _API_KEY

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "feeds.md"
_ROW = re.compile(r"\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|\s*`([^`]+)`\s*\|")
_TYPE_NAMES = {
    str: "str",
    str | None: "str | None",
    bool | None: "bool | None",
    int | None: "int | None",
    datetime | None: "datetime | None",
}


def test_the_feeds_guide_lists_every_typed_field_of_lead() -> None:
    """Each typed attribute of Lead is in the guide with its row key and type, and no other."""
    section = GUIDE.read_text(encoding="utf-8").split("\n## The Lead record\n", 1)[1]
    table = {m[1]: (m[2], m[3]) for m in map(_ROW.fullmatch, section.splitlines()) if m}
    hints = typing.get_type_hints(lsq.Lead)
    expected = {
        field.name: (field.metadata[_API_KEY], _TYPE_NAMES[hints[field.name]])
        for field in attrs.fields(lsq.Lead)
        if _API_KEY in field.metadata
    }
    assert table == expected
