"""What scrubbing a secret out of hostile text costs, next to a plain ``str.replace``.

The text is 1 MiB of what made the old patterns quadratic (backslashes, runs of
``%25``, escapes cut short) and near misses of the secret. For each, in
interleaved repetitions, the benchmark times what the library does with an
answer's body (`shown`: the first 2,000 characters kept, scrubbed), `scrub` of
the whole text, and one ``str.replace`` of the secret over the same text, and
reports median(shown) and median(scrub) / median(str.replace). Times are the
CPU time of the benchmark's thread.

Run it with ``python -m benchmarks.scrub`` from the repository root.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

from leadsq_async._secrets import scrub, shown

SECRET = "Zk93-SECRET-4f1a/b+c=77QxW"
SIZE = 2**20
ROUNDS = 5

HOSTILE: dict[str, str] = {
    "backslashes": "\\" * SIZE,
    "%25 runs": "%" + "25" * (SIZE // 2),
    "escapes cut short": "\\\\u00" * (SIZE // 5),
    "near misses": (SECRET[:-1] + " ") * (SIZE // len(SECRET)),
}


def _cpu(action: Callable[[], object]) -> float:
    started = time.thread_time()
    action()
    return time.thread_time() - started


def run() -> dict[str, float]:
    """For each hostile text: shown's milliseconds, and scrub / str.replace."""
    results: dict[str, float] = {}
    for name, text in HOSTILE.items():
        kept, whole, plain = [], [], []
        for _ in range(ROUNDS):
            kept.append(_cpu(functools.partial(shown, text, [SECRET])))
            whole.append(_cpu(functools.partial(scrub, text, [SECRET])))
            plain.append(_cpu(functools.partial(text.replace, SECRET, "***")))
        # A str.replace of 1 MiB takes a fraction of a millisecond: floor it at the
        # thread clock's resolution.
        floor = max(statistics.median(plain), 1e-6)
        results[f"{name}: shown, ms"] = statistics.median(kept) * 1000
        results[f"{name}: scrub / str.replace"] = statistics.median(whole) / floor
    return results


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:.1f}")
