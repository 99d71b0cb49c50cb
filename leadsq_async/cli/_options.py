"""Options shared by the commands that call the API: keys, host, rate limits, timeout, retries."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
import click
import httpx
from click.core import ParameterSource

from leadsq_async import REGION_HOSTS, RateLimit, RetryPolicy, Session
from leadsq_async._hosts import base_url
from leadsq_async._secrets import scrub as scrub_secrets

__all__ = [
    "ApiOptions",
    "api_options",
    "check_host",
    "command_secrets",
    "leads_file_option",
    "parse_rate_limit",
    "parse_rate_limits",
    "scrub",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_HOST = "api.leadsquared.com"


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret key this command was given replaced by ``***``, in
    any spelling (see `leadsq_async._secrets.scrub`).

    ``secrets`` defaults to those of the running command (`command_secrets`).
    """
    return scrub_secrets(text, command_secrets() if secrets is None else secrets)


def command_secrets() -> set[str]:
    """The secret keys the running command was given: its root context's ``obj``, which
    `main` makes; an empty set outside a command."""
    ctx = click.get_current_context(silent=True)
    secrets = None if ctx is None else ctx.find_root().obj
    return secrets if isinstance(secrets, set) else set()


def _secret_callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    # Every secret key seen on the command line or in the environment: no message the
    # command prints may contain one, whatever produced the message.
    if value and isinstance(ctx.find_root().obj, set):
        ctx.find_root().obj.add(value)
    return value


def _bad_value(
    ctx: click.Context | None, param: click.Parameter | None, message: str
) -> click.BadParameter:
    """A usage error for ``param`` that names where its value came from.

    Click names an option and its environment variable alike, whichever gave the
    value; this names the flag when the flag was used, the variable when it was.
    """
    if param is None or param.name is None:
        return click.BadParameter(message, ctx=ctx)
    envvar = param.envvar if isinstance(param.envvar, str) else None
    from_environment = (
        ctx is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    )
    if envvar and from_environment:
        hint = f"{envvar} (environment variable)"
    else:
        hint = " / ".join(f"'{name}'" for name in param.opts)
    return click.BadParameter(message, ctx=ctx, param=param, param_hint=hint)


def _refuse_empty_envvar(
    ctx: click.Context | None, param: click.Parameter | None, example: str
) -> None:
    """Refuse an option's environment variable that is set but empty.

    Click takes an empty variable for an unset one and uses the default:
    ``LSQ_HOST=$REGION`` with ``REGION`` unset would then call the Singapore
    host with keys from another region, and say nothing about why.
    """
    if param is None or param.name is None or not isinstance(param.envvar, str) or ctx is None:
        return
    value = os.environ.get(param.envvar)
    if value is None or value.strip():
        return
    if ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT:
        raise click.BadParameter(
            f"it is set but empty: set it to {example}, or unset it for the default "
            f"{param.default}",
            ctx=ctx,
            param=param,
            param_hint=f"{param.envvar} (environment variable)",
        )


def parse_rate_limit(
    ctx: click.Context | None, param: click.Parameter | None, value: object
) -> RateLimit | None:
    """An option callback: read ``CALLS/SECONDS`` (such as ``25/5``) into a `RateLimit`.

    Raises:
        click.BadParameter: the text is not a valid rate limit, or the option's
            environment variable is set but empty; the message names the flag or
            the variable, whichever gave the value.
    """
    _refuse_empty_envvar(ctx, param, "the plan's limit, such as 25/5")
    if value is None or isinstance(value, RateLimit):
        return value
    try:
        return RateLimit.parse(str(value))
    except (ValueError, TypeError) as exc:
        raise _bad_value(ctx, param, str(exc)) from None


def parse_rate_limits(
    ctx: click.Context | None, param: click.Parameter | None, value: object
) -> tuple[RateLimit, ...]:
    """An option callback for a repeated ``--rate-limit``: each value read as by
    `parse_rate_limit` (``25/5``, ``10000/1d``).

    Raises:
        click.BadParameter: as `parse_rate_limit`, for the first value that is not valid.
    """
    values = value if isinstance(value, (tuple, list)) else (value,)
    limits = tuple(parse_rate_limit(ctx, param, item) for item in values)
    return tuple(limit for limit in limits if limit is not None)


def check_host(ctx: click.Context | None, param: click.Parameter | None, value: object) -> Any:
    """An option callback: refuse a host `Session` would refuse, as a usage error.

    Raises:
        click.BadParameter: not a host name or an http(s) URL, plain http to a
            host that is not loopback, or an environment variable set but empty;
            the message names the flag or the variable, whichever gave the value.
    """
    _refuse_empty_envvar(ctx, param, "the account's region host, such as api-in21.leadsquared.com")
    if value is None:
        return value
    try:
        base_url(str(value))
    except (ValueError, TypeError) as exc:
        raise _bad_value(ctx, param, str(exc)) from None
    return value


@attrs.frozen
class ApiOptions:
    """How to reach the API, from the command line and the environment."""

    access_key: str | None
    secret_key: str | None = attrs.field(repr=False)
    host: str
    #: Every limit of the plan (``--rate-limit``, repeated), such as 10/5 s and 10,000 a day.
    rate_limits: tuple[RateLimit, ...]
    timeout: float
    max_attempts: int
    #: The retry policy's total deadline of one request, its wait for a slot included.
    request_deadline: float = 120.0

    def session(self, *, wait_for_quota: bool = False) -> Session:
        """A `Session` with these options; ``wait_for_quota`` as `Session` takes it.

        Raises:
            click.UsageError: a key is missing.
            ValueError, TypeError: a key is malformed.
        """
        if not self.access_key:
            raise click.UsageError("no access key: pass --access-key or set LSQ_ACCESS_KEY")
        if not self.secret_key:
            raise click.UsageError("no secret key: set LSQ_SECRET_KEY or pass --secret-key")
        return Session(
            self.access_key,
            self.secret_key,
            host=self.host,
            rate_limit=self.rate_limits,
            timeout=self.timeout,
            retry=RetryPolicy(attempts=self.max_attempts, deadline=self.request_deadline),
            wait_for_quota=wait_for_quota,
        )

    def refuse_unknown_host(self) -> None:
        """Stop with a usage error (exit code 2) when the host's name does not exist, before
        the first request of a run: a typo would otherwise read as a network failure, exit
        code 75, which a script retries for ever. A name that cannot be looked up for now
        (no network, a DNS server down) passes: the run then stops with 75, as it should.
        """
        url = httpx.URL(base_url(self.host))
        name = url.host
        if not name or _is_address(name) or _proxied(url):
            return
        try:
            socket.getaddrinfo(name, url.port or 443, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            if error.errno not in _NO_SUCH_NAME:
                return
            regions = ", ".join(f"{host} ({region})" for region, host in REGION_HOSTS.items())
            raise click.UsageError(
                f"the host {name} does not exist ({error.strerror}): check --host or "
                f"LSQ_HOST; the regions' hosts are {regions}"
            ) from None


#: The lookup errors that say the name does not exist (not that it could not be looked up).
_NO_SUCH_NAME = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _proxied(url: httpx.URL) -> bool:
    """Whether a proxy looks the host up instead of this machine."""
    import urllib.request  # only here: it costs more to import than the rest of the check

    return bool(urllib.request.getproxies()) and not urllib.request.proxy_bypass(url.host)


_API_OPTIONS = (
    click.option(
        "--access-key",
        envvar="LSQ_ACCESS_KEY",
        show_envvar=True,
        metavar="KEY",
        help="The account's access key.",
    ),
    click.option(
        "--secret-key",
        envvar="LSQ_SECRET_KEY",
        show_envvar=True,
        metavar="KEY",
        callback=_secret_callback,
        help="The account's secret key. Prefer the environment variable: other users "
        "of the machine can see a flag in the process list. It is never printed.",
    ),
    click.option(
        "--host",
        envvar="LSQ_HOST",
        show_envvar=True,
        callback=check_host,
        default=DEFAULT_HOST,
        show_default=True,
        metavar="HOST",
        help="The account's region host, such as api-in21.leadsquared.com, or a base URL "
        "such as http://127.0.0.1:8000 for the emulator (plain http only on loopback).",
    ),
    click.option(
        "--rate-limit",
        "rate_limits",
        callback=parse_rate_limits,
        multiple=True,
        metavar="CALLS/PERIOD",
        envvar="LSQ_RATE_LIMIT",
        show_envvar=True,
        default=("25/5",),
        show_default=True,
        help="The plan's limit: at most CALLS requests in any PERIOD, in seconds or with a "
        "unit (s, m, h, d). Repeat it for several limits at once, such as the daily quota: "
        "--rate-limit 10/5 --rate-limit 10000/1d (in LSQ_RATE_LIMIT, separated by spaces). "
        "The limits belong to the account: lower them if other programs use the same keys.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for each answer.",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(min=1),
        default=5,
        show_default=True,
        metavar="N",
        help="Tries of one request, the first included, before a transient failure "
        "(timeout, dropped connection, 5xx) counts as final.",
    ),
    click.option(
        "--request-deadline",
        type=click.FloatRange(min=0, min_open=True),
        default=120.0,
        show_default=True,
        metavar="SECONDS",
        help="The most one request may take, its retries and its wait for a rate-limit slot "
        "included. A slot further away than that (a spent daily quota) is not waited for: "
        "the command stops and says when the quota allows more (crawl --wait-for-quota "
        "waits instead).",
    ),
)


def leads_file_option(verb: str) -> Callable[[F], F]:
    """The required ``--leads-file PATH`` of the commands that go through many leads, and
    ``--allow-empty``, without which a file of no ids is refused (`refuse_empty`)."""
    leads_file = click.option(
        "--leads-file",
        required=True,
        type=click.Path(exists=True, dir_okay=False, allow_dash=True),
        metavar="PATH",
        help=f"The lead ids to {verb}, one per line (- for standard input). Blank lines and "
        "repeated ids are skipped.",
    )
    allow_empty = click.option(
        "--allow-empty",
        is_flag=True,
        help="Succeed when the leads file holds no id (without it: a warning, exit code 1).",
    )
    return lambda function: leads_file(allow_empty(function))


def refuse_empty(ids: int | None, path: str, allow_empty: bool) -> None:
    """Stop with a warning and exit code 1 when the leads file holds no id (``ids`` is 0),
    unless ``allow_empty``: an empty file is more often a mistake than a wish."""
    if ids == 0 and not allow_empty:
        name = "standard input" if path == "-" else path
        click.echo(f"leadsq-async: warning: {name} holds no lead id", err=True)
        raise click.exceptions.Exit(1)


def api_options(function: F) -> F:
    """Add the API options to a command; it receives them as one ``api: ApiOptions``."""

    @functools.wraps(function)
    def wrapper(**kwargs: Any) -> Any:
        api = ApiOptions(
            access_key=kwargs.pop("access_key"),
            secret_key=kwargs.pop("secret_key"),
            host=kwargs.pop("host"),
            rate_limits=kwargs.pop("rate_limits"),
            timeout=kwargs.pop("timeout"),
            max_attempts=kwargs.pop("max_attempts"),
            request_deadline=kwargs.pop("request_deadline"),
        )
        return function(api=api, **kwargs)

    decorated: Any = wrapper
    for option in reversed(_API_OPTIONS):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]
