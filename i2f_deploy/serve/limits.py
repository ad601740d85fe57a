"""Request bodies: each route's size limit, a 413 that says which limit was hit, and a deadline.

Routes whose body carries an image (uploads, base64 images, Label Studio's /predict with its
tasks) take up to ``--max-upload-mb``; the others (sessions, clicks, /setup) up to
``--max-json-kb``. The limits are per route (FastAPI's ``max_body_size``), so the request log
sees the 413; Starlette answers it as plain text, which this middleware turns into the server's
``{"detail": reason}`` naming the limit.

A body must also arrive within ``--body-timeout`` of the handler's first read (right after the
headers): a client that sends a byte every few seconds would otherwise hold its handler and
connection forever (the headers have their own deadline, ``listen.header_timeout_protocol``).
It is answered 408 and the connection closed; the handler is told the client disconnected.
"""

from __future__ import annotations

import json

import anyio
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ExplainTooLarge:
    """ASGI middleware: a body-limit 413 gets a JSON reason with the limit in bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rewriting = False

        async def explain(message: Message) -> None:
            nonlocal rewriting
            if (message["type"] == "http.response.start" and message["status"] == 413 and MAX_BODY_SIZE_SCOPE_KEY in scope
                    and (b"content-type", b"text/plain; charset=utf-8") in message.get("headers", [])):  # Starlette's
                limit = scope[MAX_BODY_SIZE_SCOPE_KEY]
                body = json.dumps({"detail": f"the request body is larger than this endpoint's limit of {limit} bytes "
                                             "(--max-upload-mb for images, --max-json-kb for other requests)"}).encode()
                rewriting = True
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            if rewriting:
                return  # Starlette's own plain-text body, already replaced
            await send(message)

        await self.app(scope, receive, explain)


class BodyDeadline:
    """ASGI middleware: a request body not complete ``seconds`` after the handler's first read is
    answered 408 (the handler's own answer, to the disconnect it is then told of, is dropped)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_complete = expired = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_complete, expired
            if body_complete:  # waiting for a disconnect while answering: no deadline
                return await receive()
            if expired:
                return {"type": "http.disconnect"}
            if deadline is None:
                deadline = anyio.current_time() + self.seconds
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                body_complete = message["type"] == "http.request" and not message.get("more_body", False)
                return message
            expired = True
            body = json.dumps({"detail": f"the request body did not arrive within {self.seconds:g} s (--body-timeout)"}).encode()
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return {"type": "http.disconnect"}

        async def unless_expired(message: Message) -> None:
            if not expired:
                await send(message)

        await self.app(scope, timed_receive, unless_expired)
