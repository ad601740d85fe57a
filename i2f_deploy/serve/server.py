"""Run the server: check the web stack is installed, load the engine, hand the app to uvicorn."""

from __future__ import annotations

import importlib.util
import logging

from i2f_deploy.errors import I2FError
from i2f_deploy.serve.config import ServeConfig

WEB_STACK = ("fastapi", "uvicorn", "multipart")  # multipart: python-multipart, for uploads


def require_web_stack() -> None:
    """One clear error when the ``serve`` extra is not installed."""
    missing = [name for name in WEB_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise I2FError(f"i2f-deploy serve needs {', '.join(missing)}: pip install 'i2f-deploy[serve]'")


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (Ctrl-C); graph runs already queued finish first."""
    require_web_stack()
    import uvicorn

    from i2f_deploy.serve.api import create_app
    from i2f_deploy.serve.core import Engine

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    engine = Engine(config)
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    finally:
        engine.close()
