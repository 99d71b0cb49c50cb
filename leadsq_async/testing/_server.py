"""Serving the emulator on a real socket with uvicorn, in a background thread or in the
running event loop. uvicorn is imported only when a server starts."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs

from leadsq_async.testing._account import Account
from leadsq_async.testing._answers import InjectedDisconnect
from leadsq_async.testing._app import EmulatorApp
from leadsq_async.testing._config import EmulatorConfig
from leadsq_async.testing._data import Dataset
from leadsq_async.testing._stats import EmulatorStats

if TYPE_CHECKING:
    import uvicorn


class _HideInjectedFaults(logging.Filter):
    """uvicorn logs an error for an app that raises; a fault the emulator injected on purpose
    is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InjectedDisconnect)


_HIDE_INJECTED_FAULTS = _HideInjectedFaults()


@attrs.frozen
class RunningEmulator:
    """An emulator listening on a socket: its URL, keys, data, config and statistics.

    Attributes:
        url: Where it listens, e.g. "http://127.0.0.1:54321" (no trailing slash).
        app: The ASGI app being served (also usable with ``httpx.ASGITransport``).
    """

    url: str
    app: EmulatorApp

    @property
    def base_url(self) -> str:
        """The API's base URL on this server, ``url + "/v2/"``."""
        return f"{self.url}/v2/"

    @property
    def access_key(self) -> str:
        """The access key the emulator accepts."""
        return self.app.config.access_key

    @property
    def secret_key(self) -> str:
        """The secret key the emulator accepts."""
        return self.app.config.secret_key

    @property
    def data(self) -> Dataset:
        """The dataset served."""
        return self.app.data

    @property
    def account(self) -> Account:
        """The account served, to change while it runs (``app.account``)."""
        return self.app.account

    @property
    def config(self) -> EmulatorConfig:
        """The app's settings, mutable at run time."""
        return self.app.config

    @property
    def stats(self) -> EmulatorStats:
        """What the app answered so far."""
        return self.app.stats


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one).

    Made from getaddrinfo's answer so that its proto is IPPROTO_TCP: asyncio sets TCP_NODELAY
    only on such sockets (socket.create_server leaves proto 0), and without it every answer
    waits some 40 ms for a delayed ACK between its headers and its body.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_server(app: EmulatorApp, started: Callable[[], None]) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                started()

    logging.getLogger("uvicorn.error").addFilter(_HIDE_INJECTED_FAULTS)
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        # The "drop" fault relies on how uvicorn's h11 protocol refuses a bad header value.
        http="h11",
        # uvicorn's default of 5 s equals the top plan's rate-limit period, so a client
        # reusing a connection at the full rate races the server's close and loses the
        # request; API servers commonly keep idle connections for a minute or more.
        timeout_keep_alive=75,
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    return Server(config)


class EmulatorServer:
    """Serves an ``EmulatorApp`` with uvicorn on ``host``:``port`` (0 picks a free port).

    Either ``start()``/``stop()`` (or ``with``) to serve from a background thread, or
    ``await serve()`` to serve in the running event loop until cancelled or until ``stop()``.
    It prints nothing itself; uvicorn's own log lines go to the "uvicorn.error" logger at
    warning level and above. Needs the ``testing`` extra (uvicorn).
    """

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None

    @property
    def url(self) -> str:
        """Where the server listens, e.g. "http://127.0.0.1:54321". For a wildcard host
        ("0.0.0.0" or "::", every interface) it is the loopback URL, "http://127.0.0.1:PORT"
        or "http://[::1]:PORT", which a client on this machine can use.

        Raises:
            RuntimeError: it is not listening yet.
        """
        if self._url is None:
            raise RuntimeError("the emulator server is not listening yet")
        return self._url

    def _listen(self) -> socket.socket:
        sock = _bind(self.host, self.port)
        host, port = sock.getsockname()[:2]
        if ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified:
            # Listening on every interface: loopback is the address sure to reach it.
            host = "::1" if sock.family == socket.AF_INET6 else "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{port}"
        return sock

    async def serve(self, on_ready: Callable[[RunningEmulator], object] | None = None) -> None:
        """Serve in the running event loop until cancelled or ``stop()`` is called.

        ``on_ready`` is called with the running emulator once it accepts connections. In the
        main thread uvicorn also stops on SIGINT/SIGTERM (and raises the signal again after).

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        await self._serve(self._listen(), on_ready)

    async def _serve(
        self, sock: socket.socket, on_ready: Callable[[RunningEmulator], object] | None
    ) -> None:
        def started() -> None:
            if on_ready is not None:
                on_ready(RunningEmulator(self.url, self.app))

        server = _uvicorn_server(self.app, started)
        self._server = server
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            await asyncio.shield(serving)
        finally:
            if not serving.done():  # cancelled: let uvicorn finish the requests in flight
                server.should_exit = True
                await serving
            sock.close()

    def start(self, timeout: float = 10.0) -> RunningEmulator:
        """Serve from a background thread; return once it accepts connections.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: it is already started, or did not start within ``timeout`` seconds.
        """
        if self._thread is not None:
            raise RuntimeError("the emulator server is already started")
        sock = self._listen()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_thread, args=(sock, ready), name="leadsq-emulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout) or self._thread_error is not None:
            self.stop()
            raise RuntimeError("the emulator server did not start") from self._thread_error
        return RunningEmulator(self.url, self.app)

    def _run_thread(self, sock: socket.socket, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(sock, lambda _: ready.set()))
        except BaseException as error:  # handed to start(); a thread has nowhere to raise
            self._thread_error = error
        finally:
            ready.set()

    def stop(self) -> None:
        """Stop serving: finish the requests in flight, close the socket, join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_in_thread(
    app: EmulatorApp | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEmulator]:
    """Serve ``app`` (a default ``EmulatorApp()`` if None) from a background thread.

    Yields the running emulator (``.url``, keys, ``.data``, ``.config``, ``.stats``) and
    stops the server when the block exits.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server did not start.
    """
    with EmulatorServer(EmulatorApp() if app is None else app, host=host, port=port) as running:
        yield running
