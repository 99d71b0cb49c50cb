"""Running the command group: every error as one line on stderr, with its exit code."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys

import click

from leadsq_async import LeadSquaredError
from leadsq_async._secrets import scrub as scrub_secrets
from leadsq_async.journal import CrawlError

from ._install import install_hint
from ._outcomes import PROG, exit_code_of
from ._run import INTERRUPTED_EXIT_CODE, CommandFailed, Interrupted, error_line

__all__ = ["run"]


class _StderrHandler(logging.Handler):
    """The library's warnings as ``leadsq-async: warning: ...`` lines, secrets scrubbed."""

    #: The running command's secret keys (set by `main`).
    secrets: set[str] = set()  # noqa: RUF012

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = scrub_secrets(record.getMessage(), self.secrets)
            # sys.stderr, not err=True: above a live progress bar, not into it.
            click.echo(f"{PROG}: {record.levelname.lower()}: {message}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def _setup_logging(secrets: set[str]) -> None:
    logger = logging.getLogger("leadsq_async")
    handlers = [h for h in logger.handlers if isinstance(h, _StderrHandler)]
    if not handlers:
        handlers = [_StderrHandler(logging.WARNING)]
        logger.addHandler(handlers[0])
        logger.propagate = False
    handlers[0].secrets = secrets


def _fail(message: str, code: int) -> int:
    click.echo(f"{PROG}: {message}", err=True)
    return code


def run(cli: click.Group, argv: list[str] | None = None) -> int:
    """Run ``cli`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Every error ends as one line on stderr, ``leadsq-async: error: ...``, with
    no traceback and never a secret key: exit code 2 for a usage error (and for
    a crawl directory another crawl is using), 130 when interrupted, 75 when
    the same command can finish the work later (a spent quota, a full disk: see
    `_outcomes`), 1 otherwise. Set LSQ_DEBUG=1 to see the traceback of an
    unexpected error.
    """
    # The secret keys the command is given, gathered as its options are read: no
    # line it prints, whatever produced it, may hold one.
    secrets: set[str] = set()
    _setup_logging(secrets)
    hide = functools.partial(scrub_secrets, secrets=secrets)
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False, obj=secrets)
    except click.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # click >= 8.2: no command given
            error.show()
            return error.exit_code
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        return _fail(f"error: {hide(error.format_message())}{where}", error.exit_code)
    except click.ClickException as error:
        return _fail(f"error: {hide(error.format_message())}", error.exit_code)
    except click.Abort:
        return _fail("aborted", INTERRUPTED_EXIT_CODE)
    except CommandFailed as error:
        label = "" if error.exit_code == INTERRUPTED_EXIT_CODE else "error: "
        return _fail(f"{label}{hide(str(error))}", error.exit_code)
    except (LeadSquaredError, CrawlError, ValueError, TypeError, OSError) as error:
        if isinstance(error, BrokenPipeError):
            return _quiet_broken_pipe()
        return _fail(f"error: {error_line(error, hide)}", exit_code_of(error))
    except ModuleNotFoundError as error:
        # uvicorn, for `emulator` and `demo`, is imported only when a server starts.
        return _fail(f"error: this command needs {error.name}: {install_hint('cli')}", 1)
    except (KeyboardInterrupt, Interrupted):
        return _fail("interrupted", INTERRUPTED_EXIT_CODE)
    except Exception as error:
        if os.environ.get("LSQ_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(error).__name__}: {error_line(error, hide)} "
            "(set LSQ_DEBUG=1 to see the traceback, and please report it)",
            1,
        )
    return result if isinstance(result, int) else 0


def _quiet_broken_pipe() -> int:
    # The reader of stdout went away (`| head`): nothing is wrong; silence the
    # interpreter's own complaint when it flushes stdout at exit.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1
