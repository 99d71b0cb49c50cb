"""What structuring a page of rows into records costs, next to json.loads of that page.

A page of 1000 realistic rows (``leadsq_async.testing.sample_rows``: the
seed pages' keys, custom fields, nulls and ``""``, the four date formats
mixed as the emulator mixes them) is serialised to JSON bytes. Then, in
interleaved repetitions, the benchmark times ``json.loads`` of those bytes and
``structure_rows`` of the freshly decoded rows (the decoding itself untimed),
and reports median(structure_rows) / median(json.loads) for each record class.

Times are the CPU time of the benchmark's thread: these machines are shared,
and the time the thread waits for a core is no cost of the code measured.

Records are built eagerly: every typed attribute is computed inside the timed
call, so the ratio is the whole cost. The target is 1.5 or less; parity (1.0)
is the aim.

``--against REVISION`` measures, in the same interleaved run, the records
module (``_records.py`` and the ``_dates.py`` it reads dates with) as it was
at a git revision, so that a change is judged side by side with what it
replaces.

Run it with ``python -m benchmarks.structuring [--against main]`` from the
repository root.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple

from leadsq_async import _records, _structure
from leadsq_async.testing import sample_rows

Kind = Literal["opportunity", "activity"]
KINDS: dict[Kind, str] = {"opportunity": "Opportunity", "activity": "Activity"}
ROOT = Path(__file__).resolve().parent.parent


class Contender(NamedTuple):
    """One records module's way from rows to records of a class, and back."""

    structure_rows: Callable[[Iterable[Mapping[str, Any]], type[Any]], list[Any]]
    unstructure: Callable[[Any], dict[str, Any]]
    cls: type[Any]

    @classmethod
    def of(cls, records: ModuleType, class_name: str) -> Contender:
        """The functions of the module ``records`` (as it was at an older revision, when
        ``_records`` held them) for its class ``class_name``."""
        return cls(records.structure_rows, records.unstructure, getattr(records, class_name))


def page_bytes(kind: Kind, rows: int, seed: int = 2026) -> bytes:
    """A page of ``rows`` sample rows of ``kind`` as the API would send it."""
    return json.dumps({"RecordCount": rows, "List": sample_rows(kind, rows, seed=seed)}).encode()


def records_at(revision: str) -> ModuleType:
    """The records module as it was at a git ``revision``, beside today's.

    Its ``_dates`` is loaded from the same revision, into a package of its own,
    so neither module touches the ``leadsq_async`` imported here.
    """
    package = "_leadsq_async_at_" + re.sub(r"\W", "_", revision)
    sys.modules[package] = parent = ModuleType(package)
    parent.__path__ = []
    for name in ("_dates", "_records"):
        path = f"leadsq_async/{name}.py"
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        module = ModuleType(f"{package}.{name}")
        module.__package__ = package
        module.__file__ = f"{revision}:{path}"
        sys.modules[module.__name__] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    return sys.modules[f"{package}._records"]


def ratios(page: bytes, contenders: Mapping[str, Contender], repeats: int) -> dict[str, float]:
    """median(structure_rows of the page's rows) / median(json.loads of the page), per contender.

    All contenders are timed in the same interleaved repetitions.
    """
    rows = json.loads(page)["List"]
    for name, (structure, unstructure, cls) in contenders.items():
        if [unstructure(record) for record in structure(rows, cls)] != rows:
            raise RuntimeError(f"{name or 'this tree'}: records do not give their rows back")
    clock = time.thread_time
    loads_times: list[float] = []
    structure_times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        start = clock()
        json.loads(page)
        loads_times.append(clock() - start)
        for name, (structure, _, cls) in contenders.items():
            rows = json.loads(page)["List"]
            start = clock()
            structure(rows, cls)
            structure_times[name].append(clock() - start)
    loads = statistics.median(loads_times)
    return {name: statistics.median(times) / loads for name, times in structure_times.items()}


def ratio(page: bytes, cls: type[Any], repeats: int) -> float:
    """median(structure_rows of the page's rows) / median(json.loads of the page)."""
    return ratios(page, {"": Contender.of(_records, cls.__name__)}, repeats)[""]


def run(rows: int = 1000, repeats: int = 200, against: str | None = None) -> dict[str, float]:
    """Ratios structure_rows / json.loads for a page of ``rows`` rows, per record class.

    With ``against``, the records module of that git revision is measured in the
    same run, and its ratios are reported too, named with the revision.
    """
    old = records_at(against) if against is not None else None
    results: dict[str, float] = {}
    for kind, class_name in KINDS.items():
        # Today rows become records in _structure; the classes are _records'.
        contenders = {
            "": Contender(
                _structure.structure_rows, _structure.unstructure, getattr(_records, class_name)
            )
        }
        if old is not None:
            contenders[f" at {against}"] = Contender.of(old, class_name)
        for name, value in ratios(page_bytes(kind, rows), contenders, repeats).items():
            results[f"structure_rows({class_name}){name} / json.loads, {rows}-row page"] = value
    return results


def main(argv: list[str] | None = None) -> None:
    """Print the ratios, and those of another revision with ``--against``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.structuring", description=__doc__)
    parser.add_argument("--against", metavar="REVISION", help="also measure _records.py at this")
    parser.add_argument("--repeats", type=int, default=200, help="interleaved repetitions (200)")
    args = parser.parse_args(argv)
    print("Structuring a page into records, as a multiple of json.loads of the page")
    print("(median of interleaved runs, thread CPU time; target <= 1.5, aim 1.0)")
    for name, value in run(repeats=args.repeats, against=args.against).items():
        print(f"  {name}: {value:.2f}x")


if __name__ == "__main__":
    main()
