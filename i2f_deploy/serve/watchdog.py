"""An overall deadline for a blocking HTTP transfer, headers included.

httpx's timeouts apply to each connect and each read, so a server that sends one byte just
before every read timeout (of the headers or of the body) holds a fetch open for as long as it
likes. ``Deadline`` closes the transfer at its deadline instead: httpx reports every socket it
opens through its ``trace`` request extension, and at the deadline a timer shuts each of them
down, which ends any read blocked on it at once (httpx then raises a transport error, which the
caller reports as the timeout it is).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from typing import Any


class Deadline:
    """A context manager: the sockets traced while it is open are shut down ``seconds`` after it opened."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._expired

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension callback: remember each new connection's socket."""
        if event != "connection.connect_tcp.complete":
            return
        sock = info["return_value"].get_extra_info("socket")
        with self._lock:
            self._sockets.append(sock)
            if self._expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)
