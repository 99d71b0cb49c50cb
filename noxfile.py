"""Sessions anyone can run: ``nox -s tests lint typecheck bench docs``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

TEST_DEPS = [
    "pytest>=8.2",
    "pytest-asyncio>=0.24",
    "pytest-timeout>=2.3",
    "starlette>=0.40",
    "hypothesis>=6.100",
    # Virtual time: the event loop's clock fast-forwards to its next timer (0.7 is the last
    # release for Python 3.10).
    "looptime>=0.7",
    # Several workers: most of the suite waits on sockets, subprocesses and real windows.
    "pytest-xdist>=3.5",
    # The dlt tests load into PostgreSQL too (psycopg2); DuckDB comes with the dlt extra.
    "dlt[postgres]",
]
BENCH_DEPS = ["aiolimiter>=1.1", "matplotlib>=3.8"]
TYPE_DEPS = ["mypy>=1.11", *TEST_DEPS, *BENCH_DEPS, "types-redis; python_version<'3'"]
# ruff formats the signatures mkdocstrings renders.
DOCS_DEPS = ["mkdocs-material>=9.5", "mkdocstrings[python]>=0.26", "ruff>=0.6"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the emulator and the local Redis and PostgreSQL servers,
    on four workers (``nox -s tests -- -n 0 tests/rules/test_wire.py`` for one, and a file).

    Four on two cores: most tests wait on sockets, subprocesses and real windows. The
    package's bytecode is written, as for an installed package, so that the hundreds of
    subprocesses the tests start do not each compile it again.
    """
    session.install("-e", ".[all]", *TEST_DEPS)
    session.run("pytest", "-n", "4", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": ""})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff's linter and formatter check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the typing examples, the examples and the benchmarks."""
    session.install("-e", ".[all]", *TYPE_DEPS)
    # The arq extra pins redis-py below 6, whose asyncio client is only partly typed; the
    # code is checked against the typed redis-py the `redis` extra also admits (pip warns
    # that arq asks for less: the tests run on the version arq takes).
    session.install("redis>=6")
    session.run("mypy", "--strict")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured side by side in one run."""
    session.install("-e", ".[all]", *BENCH_DEPS)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict."""
    session.install("-e", ".[all]", *DOCS_DEPS)
    session.run("mkdocs", "build", "--strict")
