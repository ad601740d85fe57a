"""Request bodies: each route's size limit, and a 413 that says which limit was hit.

Routes whose body carries an image (uploads, base64 images, Label Studio's /predict with its
tasks) take up to ``--max-upload-mb``; the others (sessions, clicks, /setup) up to
``--max-json-kb``. The limits are per route (FastAPI's ``max_body_size``), so the request log
sees the 413; Starlette answers it as plain text, which this middleware turns into the server's
``{"detail": reason}`` naming the limit.
"""

from __future__ import annotations

import json

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
