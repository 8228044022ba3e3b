"""The store's pending time-stamps, on every backend: every accepted envelope is pending
in the accepting transaction, and settling stores the tokens and ends it in one."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from envelope.framing import MAGIC
from envelope.limits import MAX_HEAD_XML_BYTES
from gateway.store.base import Store, TimestampRecord
from gateway.store.trust import head_bytes
from tests.contract.helpers import PARIS, T0, mid, record


async def test_accepted_envelopes_are_pending_until_settled(store: Store) -> None:
    head = b"<envelope>" + b"h" * 40
    data = MAGIC + len(head).to_bytes(4, "big") + head + b"segments" * 100
    for n in (1, 2, 3):
        rec = replace(record(n, received_from=PARIS if n == 2 else None), data=data)
        await store.accept(
            rec, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0 + timedelta(n)
        )
    # A repeated accept stores nothing and changes nothing.
    await store.accept(record(1), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0)
    pending = await store.timestamp_pending(limit=10)
    assert [p.message_id for p in pending] == [mid(1), mid(2), mid(3)]  # oldest first
    assert [p.received_from for p in pending] == [None, PARIS, None]
    assert all(p.head == data[: 12 + len(head)] for p in pending)  # the head, no segments
    assert [p.message_id for p in await store.timestamp_pending(limit=1)] == [mid(1)]

    token = TimestampRecord(mid(1), "sent", bytes(32), b"token", T0, b"<signed/>")
    await store.timestamp_settle([token], done=[mid(1), mid(2), "unknown"])
    assert [p.message_id for p in await store.timestamp_pending(limit=10)] == [mid(3)]
    assert await store.timestamps(mid(1)) == [token]
    # A second token of the same (message, kind, digest) is dropped: the first stays.
    await store.timestamp_settle([replace(token, token=b"again")], done=[mid(3)])
    assert await store.timestamps(mid(1)) == [token]
    assert await store.timestamp_pending(limit=10) == []


async def test_the_pending_head_is_cut_where_its_prefix_says_whatever_it_says(
    store: Store,
) -> None:
    """The head comes with each pending row in one query, cut in SQL (PostgreSQL) or by
    the registered function (SQLite) exactly as head_bytes() cuts it in Python: a copy
    shorter than its prefix, a head length past the data, one over MAX_HEAD_XML_BYTES."""
    huge = (MAX_HEAD_XML_BYTES + 5).to_bytes(4, "big")
    datas = [
        b"VALISE",  # shorter than a prefix: no head
        MAGIC + (10_000).to_bytes(4, "big") + b"short",  # a length past the data
        MAGIC + huge + b"x" * (MAX_HEAD_XML_BYTES + 100),  # over the bound
        MAGIC + (0xFFFFFFFF).to_bytes(4, "big") + b"y" * 64,  # the largest length
    ]
    for n, data in enumerate(datas, 1):
        rec = replace(record(n), data=data)
        await store.accept(
            rec, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0 + timedelta(n)
        )
    pending = await store.timestamp_pending(limit=10)
    assert [p.head for p in pending] == [d[: head_bytes(d[:12])] for d in datas]
