"""The SMTP session pool (gateway/bridges/smtp/sessions.py): who gives way under a
flood of connections that never authenticate (review 2, F3). No sockets."""

from __future__ import annotations

from gateway.bridges.smtp.sessions import SessionSlots, preauth_limit


class FakeSession:
    def __init__(self, spoken: bool = False) -> None:
        self.has_spoken = spoken
        self.ended = False

    def make_room(self) -> None:
        self.ended = True


def test_preauth_limit_defaults_to_half_and_never_exceeds_max_sessions() -> None:
    assert preauth_limit(100, 0) == 50
    assert preauth_limit(1, 0) == 1
    assert preauth_limit(4, 3) == 3
    assert preauth_limit(4, 9) == 4


def test_a_newcomer_ends_the_oldest_silent_preauth_session() -> None:
    slots = SessionSlots(4, 2)
    a, b, c = FakeSession(), FakeSession(), FakeSession()
    assert slots.take(a) and slots.take(b)
    assert slots.take(c)
    assert a.ended and not b.ended
    assert (slots.active, slots.preauth, slots.evicted) == (2, 2, 1)


def test_an_integrator_that_has_spoken_outlasts_any_number_of_silent_newcomers() -> None:
    slots = SessionSlots(4, 2)
    integrator = FakeSession(spoken=True)
    assert slots.take(FakeSession()) and slots.take(integrator)
    flood = [FakeSession() for _ in range(1000)]
    assert all(slots.take(s) for s in flood)
    assert not integrator.ended
    assert sum(s.ended for s in flood) == 999  # each newcomer ended the last silent one


def test_authenticated_sessions_keep_their_places_and_the_pool_refuses_only_then() -> None:
    slots = SessionSlots(3, 1)
    held = [FakeSession() for _ in range(3)]
    for session in held:
        assert slots.take(session)
        slots.authenticated(session)
    assert (slots.active, slots.preauth) == (3, 0)
    newcomer = FakeSession()
    assert not slots.take(newcomer)  # 421 at once: nothing may be ended for it
    assert not any(s.ended for s in held)
    slots.give_back(held.pop())
    assert slots.take(newcomer)


def test_preauth_sessions_are_ended_to_make_room_when_the_whole_pool_is_full() -> None:
    slots = SessionSlots(3, 2)
    authed, silent, spoken = FakeSession(), FakeSession(), FakeSession(spoken=True)
    assert slots.take(authed)
    slots.authenticated(authed)
    assert slots.take(spoken) and slots.take(silent)
    assert slots.take(FakeSession())  # full at 3: the silent one gives way
    assert silent.ended and not spoken.ended and not authed.ended
    assert slots.take(FakeSession(spoken=True)) is True  # then the silent newcomer
    assert not spoken.ended and not authed.ended
