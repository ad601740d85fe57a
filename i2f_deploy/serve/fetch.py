"""Images named by URL (Label Studio tasks), fetched only from where the server was told to look.

A task's image URL comes from whoever wrote the task, so fetching it blindly would let any task
make the server request internal addresses (SSRF). The rules:

* a relative URL (``/data/upload/1/x.png``, ``upload/1/x.png``, ``/storage-data/uploaded/?filepath=``,
  ``/data/local-files/?d=``) is resolved against Label Studio's address and sent with its API key,
  as Label Studio's ML backends do (``label_studio_sdk``'s ``get_local_path``: ``upload/...`` becomes
  ``/data/upload/...``, base and path joined with one slash; the key as ``label_studio_auth`` sends
  it, and only to that host);
* an absolute URL is fetched only if it lies under Label Studio's address or an
  ``--allow-url-prefix`` (same scheme, host and port, path under the prefix's at a ``/``);
* anything else (another host, another scheme, ``file:``, user info, ``..`` segments) is refused
  with 403 before any connection, and so is every redirect that leaves those prefixes (redirects
  are followed one at a time, each checked);
* every fetch has a deadline for the whole transfer, headers, redirects and the exchange of a
  personal access token included (``watchdog.Deadline``; name resolution is the system
  resolver's and not bounded by it), and a size limit; a response with a ``Content-Encoding`` is refused
  before its body is read (the size limit would count compressed bytes; gzip of 1 GB of zeros is
  1 MB), and URLs with control characters or that do not parse are refused with 422.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass

import httpx

from i2f_deploy.serve.images import FetchFailed, FetchRefused, ImageError, ImageTooLarge
from i2f_deploy.serve.label_studio_auth import LabelStudioAuth
from i2f_deploy.serve.watchdog import Deadline

MAX_REDIRECTS = 5
CHUNK = 1 << 16

# httpx logs every request at INFO with its full URL; a task URL's query string may be a credential
# (signed storage URLs), and no log line carries one: only its warnings are kept
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Prefix:
    """An allowed URL prefix, parsed once."""

    scheme: str
    netloc: str  # host[:port], lower case, default ports dropped
    path: str  # ends with "/"

    @classmethod
    def parse(cls, url: str) -> Prefix:
        parts = _split(url)
        if parts is None:
            raise ImageError(f"{url!r} is not an http(s) URL prefix")
        scheme, netloc, path = parts
        return cls(scheme, netloc, path if path.endswith("/") else path + "/")

    def admits(self, url: str) -> bool:
        parts = _split(url)
        if parts is None:
            return False
        scheme, netloc, path = parts
        return (scheme, netloc) == (self.scheme, self.netloc) and (path + "/").startswith(self.path)


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, normalised host[:port], path) of an http(s) URL without user info or ``..``; else None."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    if ".." in urllib.parse.unquote(parts.path).split("/") or "\\" in url:
        return None
    default = 80 if parts.scheme == "http" else 443
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    netloc = host if port in (None, default) else f"{host}:{port}"
    return parts.scheme, netloc, parts.path or "/"


class Fetcher:
    """GETs task images under the allowed prefixes; one per server."""

    def __init__(self, label_studio_url: str | None, api_key: str | None, allow_prefixes: tuple[str, ...],
                 timeout_s: float, max_bytes: int) -> None:
        self.label_studio = Prefix.parse(label_studio_url) if label_studio_url else None
        self.label_studio_url = label_studio_url.rstrip("/") if label_studio_url else None
        self.auth = LabelStudioAuth(self.label_studio_url, api_key, timeout_s) if api_key and self.label_studio_url else None
        self.allowed = [p for p in (self.label_studio, *map(Prefix.parse, allow_prefixes)) if p is not None]
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def resolve(self, ref: str) -> str:
        """The absolute URL of a task's image reference (relative ones against Label Studio's address)."""
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in ref):  # urlsplit would drop tabs and newlines
            raise ImageError(f"the image URL {ref!r} contains control characters")
        try:
            scheme = urllib.parse.urlsplit(ref).scheme
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise ImageError(f"the image URL {ref!r} is not a valid URL: {exc}") from None
        if scheme or ref.startswith("//"):
            return ref
        if self.label_studio_url is None:
            raise ImageError(f"the image URL {ref!r} is relative and no Label Studio URL is configured "
                             "(set LABEL_STUDIO_URL or --label-studio-url)")
        if ref.startswith(("upload", "/upload")):
            ref = "/data/" + ref.lstrip("/")
        return self.label_studio_url + "/" + ref.lstrip("/")

    def check(self, url: str) -> None:
        """403 unless ``url`` lies under an allowed prefix."""
        if not any(prefix.admits(url) for prefix in self.allowed):
            allowed = ", ".join(f"{p.scheme}://{p.netloc}{p.path}" for p in self.allowed) or "none configured"
            raise FetchRefused(f"refused to fetch {url!r}: image URLs must lie under Label Studio's address or an "
                               f"--allow-url-prefix (allowed: {allowed})")

    def _headers(self, url: str, deadline: Deadline) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}  # the size limit counts the image's own bytes
        if self.auth and self.label_studio and self.label_studio.admits(url):
            headers["Authorization"] = self.auth.header(deadline.trace)
        return headers

    def get(self, ref: str) -> bytes:
        """The bytes at a task's image reference, within the limits; ImageError (403, 413, 424) otherwise."""
        url = self.resolve(ref)
        self.check(url)
        with (Deadline(self.timeout_s) as deadline,
              httpx.Client(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client):
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    with client.stream("GET", url, headers=self._headers(url, deadline),
                                       extensions={"trace": deadline.trace}) as response:
                        if response.is_redirect:
                            target = urllib.parse.urljoin(url, response.headers.get("Location", ""))
                            self.check(target)
                            url = target
                            continue
                        if response.status_code != 200:
                            raise FetchFailed(f"fetching {url} failed: HTTP {response.status_code}")
                        return self._read(url, response)
                except FetchFailed:
                    if deadline.expired:  # the token exchange was cut off
                        raise FetchFailed(f"fetching {url} failed: timed out after {self.timeout_s:g} s") from None
                    raise
                except httpx.InvalidURL as exc:
                    raise ImageError(f"the image URL {url!r} is not a valid URL: {exc}") from None
                except httpx.HTTPError as exc:
                    if deadline.expired or isinstance(exc, httpx.TimeoutException):
                        raise FetchFailed(f"fetching {url} failed: timed out after {self.timeout_s:g} s") from None
                    raise FetchFailed(f"fetching {url} failed: {exc}") from None
        raise FetchFailed(f"fetching {ref} failed: more than {MAX_REDIRECTS} redirects")

    def _read(self, url: str, response: httpx.Response) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchFailed(f"the image at {url} came with Content-Encoding {encoding!r}: only unencoded images are "
                              "fetched (the size limit must count the image's own bytes)")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise ImageTooLarge(f"the image at {url} has {int(length)} bytes, more than the limit of {self.max_bytes}")
        data = bytearray()
        for chunk in response.iter_bytes(CHUNK):
            data += chunk
            if len(data) > self.max_bytes:
                raise ImageTooLarge(f"the image at {url} is larger than the limit of {self.max_bytes} bytes")
        return bytes(data)
