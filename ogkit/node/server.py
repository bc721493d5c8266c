"""Running an ASGI app with uvicorn on a socket this process binds (port 0: a free one),
until SIGTERM or SIGINT; shared by ``ogkit node serve`` and ``ogkit facilitator serve``.

uvicorn times out idle keep-alive connections, but not a new connection whose request
headers never finish: slow-loris clients trickling header bytes would hold connections
until ``limit_concurrency`` is reached and every other client gets 503. Here a connection
whose first request's headers have not arrived within ``header_timeout`` seconds is
closed (request bodies have their own deadline in the app)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["bind", "serve_app"]

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: the system picks a free port)."""
    from ogkit.errors import ConfigError

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port (0: any "
            "free port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline on the first request's headers."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._headers_deadline = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                log.info("closing a connection whose request headers took over %gs", header_timeout)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            deadline = getattr(self, "_headers_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

    return _Protocol


def serve_app(
    app: Any,
    sock: socket.socket,
    *,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    header_timeout: float = 10.0,
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT (uvicorn's graceful shutdown: the
    requests in flight are answered first). ``on_ready`` gets the URL once it accepts."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready(url)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after its graceful shutdown, which kills the
            # process before the caller stops its threads and cluster: take the signal,
            # shut down, and let the caller exit 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        http=_protocol(header_timeout),
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        limit_concurrency=1024,
        backlog=2048,
    )
    server = _Server(config)
    log.info("serving on %s", url)
    server.run(sockets=[sock])
