"""Interactive sessions of the native API: an image, its clicks, the undone ones; one lock each.

A session is only its click list and redo stack: the prediction is ``Engine.segment(image,
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
from i2f_deploy.serve.core import Engine, NotFound, Segmentation

log = logging.getLogger("i2f_deploy.serve")


@dataclass(eq=False)
class Session:
    session_id: str
    image_id: str
    clicks: list[Click] = field(default_factory=list)
    redo: list[Click] = field(default_factory=list)
    last: Segmentation | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sessions:
    """The registry, and the session operations that hold each session's lock."""

    def __init__(self, engine: Engine, max_sessions: int) -> None:
        self.engine = engine
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, image_id: str) -> Session:
        self.engine.image(image_id)  # 404 for an unknown image
        session = Session(secrets.token_urlsafe(16), image_id)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                _, dropped = self._sessions.popitem(last=False)
                log.info("sessions: dropped the least recently used one (on image %s, %d clicks) to keep at most %d",
                         dropped.image_id, len(dropped.clicks), self.max_sessions)
        return session

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

    def _run(self, session: Session, clicks: list[Click]) -> Segmentation:
        result = self.engine.segment(session.image_id, clicks)
        session.clicks, session.last = list(clicks), result  # nothing changed until here
        return result

    def click(self, session_id: str, click: Click) -> Segmentation:
        """Add a click; clears the redo stack."""
        session = self.get(session_id)
        with session.lock:
            result = self._run(session, [*session.clicks, click])
            session.redo.clear()
            return result

    def undo(self, session_id: str) -> Segmentation:
        """Drop the last click (nothing happens without clicks)."""
        session = self.get(session_id)
        with session.lock:
            if not session.clicks:
                return self._current(session)
            undone = session.clicks[-1]
            result = self._run(session, session.clicks[:-1])
            session.redo.append(undone)
            return result

    def redo(self, session_id: str) -> Segmentation:
        """Re-add the last undone click (nothing happens without one)."""
        session = self.get(session_id)
        with session.lock:
            if not session.redo:
                return self._current(session)
            result = self._run(session, [*session.clicks, session.redo[-1]])
            session.redo.pop()
            return result

    def reset(self, session_id: str) -> Segmentation:
        """Forget every click (and the redo stack)."""
        session = self.get(session_id)
        with session.lock:
            result = self._run(session, [])
            session.redo.clear()
            return result

    def current(self, session_id: str) -> tuple[Session, Segmentation]:
        """The session and its current prediction (recomputed if needed)."""
        session = self.get(session_id)
        with session.lock:
            return session, self._current(session)

    def _current(self, session: Session) -> Segmentation:
        return session.last or self._run(session, session.clicks)
