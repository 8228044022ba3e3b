"""What the store contract tests share (and other store tests borrow): a fixed clock, site
names, and envelope records and acceptances built from a number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.store.base import Acceptance, EnvelopeRecord, Store, Transition

T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
PARIS = "M-PARIS"
HANOI = "M-HANOI"
HQ = "HQ"


def mid(n: int) -> str:
    return f"01900000-0000-7000-8000-{n:012x}"


def record(
    n: int,
    *,
    priority: str = "routine",
    created: datetime = T0,
    expires: datetime | None = None,
    destinations: tuple[str, ...] = (PARIS,),
    received_from: str | None = None,
    data: bytes | None = None,
) -> EnvelopeRecord:
    return EnvelopeRecord(
        message_id=mid(n),
        origin=HQ,
        destinations=destinations,
        digest=bytes([n % 256]) * 32,
        created=created,
        expires=expires or created + timedelta(days=7),
        priority=priority,
        received_from=received_from,
        data=data if data is not None else b"\x00ciphertext" + n.to_bytes(4, "big"),
    )


async def put(
    store: Store,
    n: int,
    hops: tuple[str, ...] = (PARIS,),
    *,
    here: bool = False,
    now: datetime = T0,
    **kw: object,
) -> str:
    acc = await store.accept(
        record(n, **kw),  # type: ignore[arg-type]
        next_hops=hops,
        deliver_here=here,
        hop_ack=b"ack-%d" % n,
        now=now,
    )
    assert acc == Acceptance(True, b"ack-%d" % n)
    return mid(n)


async def states(store: Store, message_id: str) -> dict[str, str]:
    return {q.peer: q.state for q in await store.queue() if q.message_id == message_id}


async def expired(store: Store, now: datetime) -> list[str]:
    """The ids of the messages expire() changed (one Closed each, in id order)."""
    return [c.message_id for c in await store.expire(now=now)]


def steps(history: list[Transition]) -> list[tuple[str | None, str, str]]:
    return [(t.peer, t.state, t.reason) for t in history]


def is_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
