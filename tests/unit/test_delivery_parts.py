"""Small parts of the relay's delivery path: the hop handler's head cache and the JSON
log lines written one record per batch."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

from gateway.relay.hop import HeadCache
from gateway.runtime import logjson
from gateway.store.base import EnvelopeRecord

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _record(mid: str, data: bytes) -> EnvelopeRecord:
    return EnvelopeRecord(mid, "HQ", ("M-PARIS",), b"\x00" * 32, NOW, NOW, "routine", "HQ", data)


def test_head_cache_gives_a_head_once_and_only_for_the_same_bytes() -> None:
    cache = HeadCache(size=2)
    parsed = object()
    cache.put("a", parsed, 4, b"HEADrest")  # type: ignore[arg-type]
    assert cache.take(_record("a", b"HEADother")) == (parsed, 4)
    assert cache.take(_record("a", b"HEADother")) is None  # taken
    cache.put("b", parsed, 4, b"HEADrest")  # type: ignore[arg-type]
    assert cache.take(_record("b", b"HEAXrest")) is None  # not the bytes it was made from
    for mid in "cde":
        cache.put(mid, parsed, 4, b"HEAD")  # type: ignore[arg-type]
    assert cache.take(_record("c", b"HEAD")) is None  # evicted, oldest first
    assert cache.take(_record("e", b"HEAD")) == (parsed, 4)


def test_json_lines_one_record_per_batch() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logjson.JsonFormatter())
    log = logging.getLogger("test.logjson")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        logjson.each(log, logging.INFO, "forwarded", [{"id": "m1"}, {"id": "m2"}], peer="HQ")
        logjson.each(log, logging.INFO, "forwarded", [], peer="HQ")  # nothing at all
        logjson.event(log, logging.WARNING, "deferred", peer="HQ", count=3)
        log.info(json.dumps({"event": "legacy", "id": "m3"}))
        log.info("plain words")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x.get("id"), x.get("peer")) for x in lines[:2]] == [
        ("forwarded", "m1", "HQ"),
        ("forwarded", "m2", "HQ"),
    ]
    assert lines[2]["event"] == "deferred" and lines[2]["level"] == "warning"
    assert lines[2]["count"] == 3
    assert lines[3]["event"] == "legacy" and lines[3]["id"] == "m3"
    assert lines[4]["msg"] == "plain words"
    assert all(x["logger"] == "test.logjson" for x in lines)
