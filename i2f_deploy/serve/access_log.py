"""One structured log line per request: what an operator needs, and nothing a client sent.

The line (logger ``i2f_deploy.serve.access``) is a JSON object: ``id`` (also answered as the
``X-Request-ID`` header, to match a client's report), ``method``, ``route`` (the route's template,
``/api/sessions/{session_id}/clicks``: session ids are the keys to sessions and stay out of logs),
``status``, ``ms`` and ``client`` (address). No bodies, query strings or headers are logged, so no
image data and no tokens; uvicorn's own access log, which prints the raw path, is turned off.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("i2f_deploy.serve.access")

UNMATCHED = "<unmatched>"


class AccessLog:
    """ASGI middleware writing the line when the request ends (500 if the app raised)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            client = scope.get("client")
            log.info(json.dumps({"id": request_id, "method": scope["method"], "route": route, "status": status,
                                 "ms": round((time.perf_counter() - start) * 1e3, 1),
                                 "client": client[0] if client else None}))
