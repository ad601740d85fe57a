"""Undo and redo over a click sequence: the one rule the session and the server's sessions follow.

A history is the clicks so far and a stack of undone ones. Each operation names the click
sequence it leads to and hands it to ``apply`` (which computes the state after it, see
``runtime.interactive.segment``); the history changes only once ``apply`` has returned, so a
refused click or a failed decoder run leaves it as it was. A new click clears the redo stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from i2f_deploy.prompt_map import Click

T = TypeVar("T")
Clicks = tuple[Click, ...]


class ClickHistory:
    """The clicks of one interaction, oldest first, and the clicks undone, last on top."""

    def __init__(self) -> None:
        self.clicks: Clicks = ()
        self._undone: list[Click] = []

    @property
    def can_undo(self) -> bool:
        return bool(self.clicks)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def click(self, click: Click, apply: Callable[[Clicks], T]) -> T:
        """Add ``click``; clears the redo stack."""
        result = apply((*self.clicks, click))
        self.clicks, self._undone = (*self.clicks, click), []
        return result

    def undo(self, apply: Callable[[Clicks], T]) -> T | None:
        """Drop the last click (None, and nothing applied, without clicks)."""
        if not self.clicks:
            return None
        result = apply(self.clicks[:-1])
        self._undone.append(self.clicks[-1])
        self.clicks = self.clicks[:-1]
        return result

    def redo(self, apply: Callable[[Clicks], T]) -> T | None:
        """Re-add the last undone click (None, and nothing applied, without one)."""
        if not self._undone:
            return None
        result = apply((*self.clicks, self._undone[-1]))
        self.clicks = (*self.clicks, self._undone.pop())
        return result

    def reset(self, apply: Callable[[Clicks], T]) -> T:
        """Forget every click and the redo stack."""
        result = apply(())
        self.clicks, self._undone = (), []
        return result
