"""How many SMTP sessions are open at once, and which one gives way under a flood.

Rules:
- At most ``limit`` sessions are open at once on one listener, and at most
  ``preauth_limit`` of them have not authenticated yet (pre-auth). A session leaves
  the pre-auth pool at a successful AUTH (or, when AUTH is not required, at its first
  accepted MAIL); from then on it is never ended to make room.
- A new connection is never turned away because of pre-auth sessions: when either
  count is full, the pre-auth session likeliest to be an attacker's is told ``421
  4.7.0`` and closed to make room (one that has sent nothing, else the oldest). Only
  when every open session is authenticated is the newcomer itself told ``421 4.7.0``
  and closed. Refusing the newcomer instead would hand every freed place to whoever
  reconnects fastest: a squatter that reconnects the instant its pre-auth deadline
  ends it would keep integrators out for good (review: 0 greetings in 59 tries).
- So a flood of idle connections cannot keep an integrator from reaching AUTH: to end
  an integrator's session it must open ``preauth_limit`` newer sessions in the
  moment between the integrator's connect and its first command, or, once the
  integrator has spoken, keep every other pre-auth session busy talking too.
- Counts change in ``connection_made``/``connection_lost`` and at once on eviction,
  which the event loop runs in order: a burst of connects cannot overshoot them.
"""

from __future__ import annotations

from typing import Protocol


class Session(Protocol):
    """What the pool needs of a session (gateway/bridges/smtp_server.ValiseSMTP)."""

    @property
    def has_spoken(self) -> bool: ...

    def make_room(self) -> None:
        """Tell the client 421 4.7.0 and close: its place was given to a newcomer."""


def preauth_limit(max_sessions: int, configured: int) -> int:
    """``[smtp] max_preauth_sessions``, 0 meaning half of max_sessions (at least one)."""
    if configured > 0:
        return min(configured, max_sessions)
    return max(1, max_sessions // 2)


class SessionSlots:
    """The sessions open at once on one listener: at most ``limit``, of which at most
    ``preauth_limit`` not yet authenticated."""

    def __init__(self, limit: int, preauth_limit: int | None = None) -> None:
        self.limit = limit
        self.preauth_limit = min(preauth_limit or limit, limit)
        self.active = 0
        self._preauth: dict[Session, None] = {}  # oldest first
        self.evicted = 0  # pre-auth sessions ended to make room, since start

    @property
    def preauth(self) -> int:
        return len(self._preauth)

    def take(self, session: Session) -> bool:
        """Count ``session`` in as pre-auth, ending another pre-auth session if that
        is what makes room; False when every open session is authenticated."""
        while self.active >= self.limit or self.preauth >= self.preauth_limit:
            victim = self._victim()
            if victim is None:
                return False
            self.give_back(victim)
            self.evicted += 1
            victim.make_room()
        self.active += 1
        self._preauth[session] = None
        return True

    def _victim(self) -> Session | None:
        # One that has not said a word first: an integrator says EHLO at once.
        for session in self._preauth:
            if not session.has_spoken:
                return session
        return next(iter(self._preauth), None)

    def authenticated(self, session: Session) -> None:
        """``session`` authenticated (or began a transaction): never evicted now."""
        self._preauth.pop(session, None)

    def give_back(self, session: Session) -> None:
        """``session`` ended (or was evicted): its place is free. Idempotent only
        through the caller, which gives back once."""
        self.active -= 1
        self._preauth.pop(session, None)
