"""The ``Authorization`` header for Label Studio's API, from the configured key, as Label Studio
and its SDK expect it (``label_studio/jwt_auth`` of HumanSignal/label-studio, ``TokensClientExt``
in ``label_studio_sdk/tokens/client_ext.py`` of HumanSignal/label-studio-sdk):

* a legacy token (a plain key) is sent as ``Authorization: Token KEY``;
* a personal access token is a JWT refresh token: Label Studio refuses it as a bearer token.
  It is exchanged at ``POST {LABEL_STUDIO_URL}/api/token/refresh/`` (JSON ``{"refresh": PAT}``,
  answer ``{"access": JWT}``) for an access token, sent as ``Authorization: Bearer ACCESS``. Access
  tokens live minutes (``exp`` in their payload); a new one is fetched once less than
  ``REFRESH_MARGIN_S`` of its life is left, so a fetch never carries an expired one. The exchange
  is part of the fetch that needs it: it runs under that fetch's deadline (``watchdog.Deadline``).

A refused exchange is a 424 naming Label Studio's answer: the annotator then sees that the
backend's dependency failed, and the server's caller the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from i2f_deploy.serve.images import FetchFailed

REFRESH_PATH = "/api/token/refresh/"
REFRESH_MARGIN_S = 30.0


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified (only Label Studio can verify it); None if ``token`` is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(header, dict) and isinstance(payload, dict) else None


class LabelStudioAuth:
    """One server's credentials for Label Studio: the key, and the access token exchanged for it."""

    def __init__(self, label_studio_url: str, api_key: str, timeout_s: float) -> None:
        self.refresh_url = label_studio_url.rstrip("/") + REFRESH_PATH
        self.api_key = api_key
        self.personal = jwt_claims(api_key) is not None
        self.timeout_s = timeout_s
        self._access: tuple[str, float] | None = None  # (token, expiry in time.time() seconds)
        self._lock = threading.Lock()

    def header(self, trace: Callable[[str, dict[str, Any]], None] | None = None) -> str:
        """The ``Authorization`` value to send to Label Studio now; ``trace`` is the fetch's
        ``Deadline.trace``, which also bounds an exchange."""
        if not self.personal:
            return f"Token {self.api_key}"
        with self._lock:
            if self._access is None or time.time() > self._access[1] - REFRESH_MARGIN_S:
                self._access = self._exchange(trace)
            return f"Bearer {self._access[0]}"

    def _exchange(self, trace: Callable[[str, dict[str, Any]], None] | None) -> tuple[str, float]:
        """A fresh access token for the personal access token, and its expiry."""
        failed = f"Label Studio did not exchange the personal access token (LABEL_STUDIO_API_KEY) at {self.refresh_url}"
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client:
                response = client.post(self.refresh_url, json={"refresh": self.api_key},
                                       extensions={"trace": trace} if trace else {})
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{failed}: {exc}") from None
        if response.status_code != 200:
            raise FetchFailed(f"{failed}: HTTP {response.status_code} {_detail(response)}")
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            access = None
        claims = jwt_claims(access) if isinstance(access, str) else None
        if claims is None or not isinstance(claims.get("exp"), (int, float)):
            raise FetchFailed(f"{failed}: the answer holds no access token with an expiry")
        return access, float(claims["exp"])


def _detail(response: httpx.Response) -> str:
    """Label Studio's reason for a refusal (``detail`` of its JSON body), if it gave one."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return ""
    return f"({detail})" if isinstance(detail, str) else ""
