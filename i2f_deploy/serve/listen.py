"""The listening socket and the connections on it.

* ``bind``: the socket is bound before the models load, so a port in use (or an address this
  machine does not have) is one ``error:`` line at once, not uvicorn's after a long start-up.
* ``header_timeout_protocol``: uvicorn's HTTP protocol with a deadline for each request's headers.
  uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a client
  takes to send headers, so one that sends a byte every few seconds holds its connection (and a
  slot of the server's connection table) forever. The deadline runs from the connection's start
  and from the end of each answer until that request's headers are complete; then the connection
  is closed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from i2f_deploy.errors import I2FError


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise I2FError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, closing connections whose request headers take over ``seconds``."""

    class HeaderTimeout(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _timer: asyncio.TimerHandle | None = None
        _waiting_for: Any = None  # the request cycle current when the deadline was armed

        def _arm(self) -> None:
            self._disarm()
            self._waiting_for = self.cycle
            self._timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._timer is not None and self.cycle is not self._waiting_for:  # a new request's headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # a pipelined request whose headers are already in is being answered: nothing to wait for
            if not self.transport.is_closing() and self.cycle.response_complete:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeout
