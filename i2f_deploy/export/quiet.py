"""Tools' notices about themselves (deprecations, suggestions, per-step INFO lines) kept out of an
export's output, so its own progress lines and real warnings stay readable."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def loggers_at(level: int, *names: str) -> Iterator[None]:
    """Raise the named loggers (``""``: the root logger) to ``level`` for the block."""
    loggers = [logging.getLogger(name or None) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before):
            logger.setLevel(old)
