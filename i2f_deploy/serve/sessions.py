"""Interactive sessions of the native API: an image, its clicks, the undone ones; one lock each.

A session is only its click history (``runtime.history.ClickHistory``: the clicks and the redo
stack, the undo rule the in-process session follows too): the prediction is ``Engine.segment(image,
clicks)``, which continues from the states already decoded, so a click or a redo costs one
decoder run and an undo at most one. Work on one session is serialised by its lock (a second
request waits for the first); different sessions run in parallel. Ids are random and
unguessable; the registry keeps at most ``max_sessions``, dropping the least recently used.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from i2f_deploy.prompt_map import Click
from i2f_deploy.runtime.history import ClickHistory, Clicks
from i2f_deploy.serve.core import NotFound, Segmentation, ServingEngine

log = logging.getLogger("i2f_deploy.serve")


@dataclass(eq=False)
class Session:
    session_id: str
    image_id: str
    history: ClickHistory = field(default_factory=ClickHistory)
    last: Segmentation | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sessions:
    """The registry, and the session operations that hold each session's lock."""

    def __init__(self, engine: ServingEngine, max_sessions: int) -> None:
        self.engine = engine
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, image_id: str) -> tuple[Session, Segmentation]:
        """A new session on a posted image and its first answer (no clicks yet: it waits for the
        image's encoding; 404 for an unknown image, and no session is made)."""
        result = self.engine.segment(image_id, ())
        session = Session(secrets.token_urlsafe(16), image_id, last=result)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                _, dropped = self._sessions.popitem(last=False)
                log.info("sessions: dropped the least recently used one (on image %s, %d clicks) to keep at most %d",
                         dropped.image_id, len(dropped.history.clicks), self.max_sessions)
        return session, result

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise NotFound(f"unknown session id {session_id!r} (never created, deleted, or dropped "
                               f"as one of more than {self.max_sessions} sessions)")
            self._sessions.move_to_end(session_id)
            return session

    def delete(self, session_id: str) -> None:
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                raise NotFound(f"unknown session id {session_id!r}")

    def __len__(self) -> int:
        return len(self._sessions)

    def _run(self, session: Session, clicks: Clicks) -> Segmentation:
        result = self.engine.segment(session.image_id, clicks)
        session.last = result
        return result

    def click(self, session_id: str, click: Click) -> tuple[Session, Segmentation]:
        """Add a click; clears the redo stack."""
        session = self.get(session_id)
        with session.lock:
            return session, session.history.click(click, lambda clicks: self._run(session, clicks))

    def undo(self, session_id: str) -> tuple[Session, Segmentation]:
        """Drop the last click (nothing happens without clicks)."""
        session = self.get(session_id)
        with session.lock:
            return session, session.history.undo(lambda clicks: self._run(session, clicks)) or self._current(session)

    def redo(self, session_id: str) -> tuple[Session, Segmentation]:
        """Re-add the last undone click (nothing happens without one)."""
        session = self.get(session_id)
        with session.lock:
            return session, session.history.redo(lambda clicks: self._run(session, clicks)) or self._current(session)

    def reset(self, session_id: str) -> tuple[Session, Segmentation]:
        """Forget every click (and the redo stack)."""
        session = self.get(session_id)
        with session.lock:
            return session, session.history.reset(lambda clicks: self._run(session, clicks))

    def current(self, session_id: str) -> tuple[Session, Segmentation]:
        """The session and its current prediction (recomputed if needed)."""
        session = self.get(session_id)
        with session.lock:
            return session, self._current(session)

    def _current(self, session: Session) -> Segmentation:
        return session.last or self._run(session, session.history.clicks)
