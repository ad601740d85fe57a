"""Who may call the server: an optional shared token, and Label Studio's basic-auth convention.

With ``--token`` set, every request but the public paths must carry it, in the header the
calling tool sends:

* ``Authorization: Bearer TOKEN`` (the native API, the web page, scripts);
* ``Token: TOKEN`` (X-AnyLabeling's remote-server client sends its API key in this header).

Label Studio sends no token to an ML backend; it sends the HTTP basic-auth user and password set
in the model's connection (*Authentication method: Basic Auth*). With ``--basic-auth-user`` and
``--basic-auth-pass`` set (``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``, the variables of
``label_studio_ml/api.py`` in HumanSignal/label-studio-ml-backend), ``Authorization: Basic ...``
with that pair is accepted as well. Refusals are 401 with ``WWW-Authenticate`` naming the schemes.

Public: ``/health`` (Label Studio and load balancers poll it), the web page and its static files
and the API schema (``/docs``, ``/redoc``, ``/openapi.json``, their assets): they hold no data, and a
browser must load the page before it can ask for the token. ``/webhook`` too: Label Studio posts
its events there without credentials, and the server reads none of them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

DOCS_ASSETS = "/static-docs"  # Swagger UI and ReDoc, served from the installed fastapi-offline package

PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                          "/webhook"})
PUBLIC_PREFIXES = ("/static/", DOCS_ASSETS + "/")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class RequireAuth:
    """ASGI middleware: 401 for a request without the token (or basic-auth pair) when one is set."""

    def __init__(self, app: ASGIApp, token: str | None, basic_auth: tuple[str, str] | None) -> None:
        self.app = app
        self.token = token
        self.basic_auth = basic_auth
        challenges = (["Bearer"] if token else []) + (['Basic realm="i2f-deploy"'] if basic_auth else [])
        self.challenges = [(b"www-authenticate", c.encode()) for c in challenges]

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, credentials = authorization.partition(" ")
        if self.token:
            if scheme.lower() == "bearer" and _same(credentials.strip(), self.token):
                return True
            if _same(headers.get(b"token", b"").decode("latin-1").strip(), self.token):
                return True
        if self.basic_auth and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return _same(user, self.basic_auth[0]) & _same(password, self.basic_auth[1])
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.challenges or is_public(scope["path"])
                or self.allowed(dict(scope["headers"]))):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "authentication required: send the server's token "
                                     "(Authorization: Bearer TOKEN, or a Token header) or its basic-auth user and password"})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), *self.challenges]})
        await send({"type": "http.response.body", "body": body.encode()})
