"""Run the server: check the web stack is installed, bind the port, load the engine, hand the app
to uvicorn, and on SIGTERM or Ctrl-C let the images already queued for the encoder finish."""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import signal

from i2f_deploy.errors import I2FError
from i2f_deploy.serve.config import ServeConfig

WEB_STACK = ("fastapi", "fastapi_offline", "uvicorn", "multipart", "httpx", "PIL")  # multipart: python-multipart; PIL: Pillow

log = logging.getLogger("i2f_deploy.serve")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")  # Host header values, IPv6 in brackets


def require_web_stack() -> None:
    """One clear error when the ``serve`` extra is not installed."""
    missing = [name for name in WEB_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise I2FError(f"i2f-deploy serve needs {', '.join(missing)}: pip install 'i2f-deploy[serve]'")


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (``localhost`` or a loopback address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, given: list[str] | None) -> tuple[str, ...]:
    """The Host headers to answer: those given, else on loopback only this machine's names (a
    web page elsewhere cannot then reach a token-less local server by rebinding its own name to
    127.0.0.1), else any."""
    if given:
        return tuple(given)
    return LOOPBACK_NAMES if is_loopback(host) else ("*",)


def warn_if_open(config: ServeConfig, host: str) -> None:
    """A warning when others can reach the server and no token guards it."""
    if not is_loopback(host) and not (config.token or config.basic_auth):
        log.warning("listening on %s without a token: anyone who can reach this address can use the server "
                    "and its Label Studio access; set I2F_SERVE_TOKEN (or --token), or bind to 127.0.0.1", host)


def _stop(signum: int, frame: object) -> None:
    """SIGTERM once uvicorn has stopped (it raises the signal again then): unwind like Ctrl-C, so
    that ``run`` closes the engine, which finishes the encodings already queued."""
    raise SystemExit(0)


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until SIGTERM or Ctrl-C: requests in progress get 5 s to finish, then the images
    already queued for the encoder are encoded before the process exits."""
    require_web_stack()
    import uvicorn

    from i2f_deploy.serve.api import create_app
    from i2f_deploy.serve.core import Engine
    from i2f_deploy.serve.listen import bind, header_timeout_protocol

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    sock = bind(host, port)  # before the models load: a port in use is refused at once
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        warn_if_open(config, host)
        engine = Engine(config)
        try:
            # access_log=False: uvicorn's line prints raw paths (session ids); access_log.AccessLog writes one without
            settings = uvicorn.Config(create_app(engine), log_level="info", timeout_graceful_shutdown=5,
                                      access_log=False, http=header_timeout_protocol(config.header_timeout_s))
            uvicorn.Server(settings).run(sockets=[sock])
        finally:
            engine.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
