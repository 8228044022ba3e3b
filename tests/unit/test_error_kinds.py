"""One hierarchy for "retry later" versus "refused for good" (gateway/runtime/errors.py):
each module's failure is a Retry or a Refused, never both, with its name and message
kept; and the workers decide by that kind, not by the module that raised it."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crypto.tsa import TimestampError
from envelope.values import format_time
from gateway.bridges.mail import delivery
from gateway.bridges.mail.delivery import MailRefused
from gateway.bridges.mail.smarthost import SmarthostError, SmarthostRefused, SmarthostUnavailable
from gateway.proof.timestamping import (
    PERMANENT_FAILURES,
    StampDeferred,
    StampRefused,
    rejection_kind,
)
from gateway.proof.tsa_service import TimestampingError
from gateway.proof.witness_format import WitnessError
from gateway.relay import courier
from gateway.relay.courier import Couriers
from gateway.relay.handoff import DeliveryDeferred
from gateway.relay.hop import HopError, HopRefused, HopUnknownKey
from gateway.relay.local_delivery import LocalDelivery
from gateway.relay.opening import Opened
from gateway.runtime.errors import PeerError, Refused, Retry
from gateway.runtime.events import EventBus
from gateway.runtime.metrics import Metrics
from gateway.store.base import Claimed, EnvelopeRecord
from tests.conftest import NOW

KINDS: list[tuple[type[Exception], type[Exception]]] = [
    (PeerError, Retry),
    (HopUnknownKey, Retry),
    (HopRefused, Refused),
    (SmarthostUnavailable, Retry),
    (SmarthostRefused, Refused),
    (DeliveryDeferred, Retry),
    (MailRefused, Refused),
    (StampDeferred, Retry),
    (StampRefused, Refused),
]


@pytest.mark.parametrize(("cls", "kind"), KINDS, ids=[c.__name__ for c, _ in KINDS])
def test_each_failure_is_of_one_kind(cls: type[Exception], kind: type[Exception]) -> None:
    other = Refused if kind is Retry else Retry
    assert issubclass(cls, kind)
    assert not issubclass(cls, other), f"{cls.__name__} is both a Retry and a Refused"
    assert str(cls("the reason")) == "the reason"  # messages kept as they are


def test_the_module_bases_still_catch_both_halves() -> None:
    assert issubclass(HopRefused, HopError) and issubclass(HopUnknownKey, HopError)
    assert not issubclass(HopUnknownKey, HopRefused)  # a retry is no longer a refusal
    assert issubclass(SmarthostRefused, SmarthostError)
    assert issubclass(SmarthostUnavailable, SmarthostError)


@pytest.mark.parametrize("cls", [WitnessError, TimestampingError, HopError, SmarthostError])
def test_errors_of_input_or_set_up_are_of_neither_kind(cls: type[Exception]) -> None:
    assert not issubclass(cls, Retry) and not issubclass(cls, Refused)


def test_a_tsa_rejection_is_sorted_by_its_failure() -> None:
    for failure in sorted(PERMANENT_FAILURES):
        kind = rejection_kind(TimestampError("no", failure=failure), "HQ")
        assert isinstance(kind, StampRefused) and str(kind) == "no"
    for failure in ("timeNotAvailable", "systemFailure", "addInfoNotAvailable"):
        kind = rejection_kind(TimestampError("busy", failure=failure), "HQ")
        assert isinstance(kind, StampDeferred) and str(kind) == "HQ: busy"


# -- the courier: a Retry defers, a Refused fails -----------------------------------------


class FakeStore:
    def __init__(self) -> None:
        self.deferred: list[tuple[str, str, str, datetime]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.forwarded_ids: list[str] = []

    async def defer(
        self,
        message_id: str,
        peer: str,
        *,
        owner: str,
        reason: str,
        next_attempt: datetime,
        now: datetime,
    ) -> None:
        self.deferred.append((message_id, peer, reason, next_attempt))

    async def fail(
        self, message_id: str, peer: str, *, reason: str, now: datetime, owner: str | None = None
    ) -> None:
        assert owner is not None  # a courier fails only its own try (review 10c F1)
        self.failed.append((message_id, peer, reason))

    async def hold(self, message_id: str, *, now: datetime, reason: str) -> None:
        raise AssertionError("nothing here is held")

    async def forwarded(self, done: Any, *, owner: str, now: datetime, receipts: Any) -> None:
        self.forwarded_ids += [m for m, _ in done]


def _couriers(store: FakeStore) -> Couriers:
    relay = SimpleNamespace(
        batch_envelopes=10,
        request_timeout_seconds=5.0,
        directory_poll_seconds=300.0,
        retry_base_seconds=2.0,
        retry_max_seconds=60.0,
    )
    entry = SimpleNamespace(endpoint="https://127.0.0.1:1", verify_keys=dict)
    ctx = SimpleNamespace(
        config=SimpleNamespace(relay=relay),
        directory=SimpleNamespace(site=lambda _site: entry),
        store=store,
        here="M-PARIS",
    )
    c = Couriers(
        ctx,  # type: ignore[arg-type]
        owner="test",
        wake=asyncio.Event(),
        metrics=Metrics(),
        events=EventBus(),
        crash=lambda _point: None,
    )
    c.session = object()  # type: ignore[assignment]
    return c


def _claimed(message_id: str) -> Claimed:
    return Claimed(
        message_id,
        "HQ",
        attempts=0,
        data=b"",
        expires=NOW + timedelta(days=1),
        origin="M-PARIS",
        digest=b"\x01" * 32,
        chain=b"\x02" * 64,
    )


def _ack_by_unknown_key() -> dict[str, str]:
    """A well-formed hop ack signed by a key of HQ that our directory does not list."""
    return {
        "site": "HQ",
        "key": "ef" * 16,
        "at": format_time(NOW),
        "from": "M-PARIS",
        "signature": base64.b64encode(b"\x00" * 64).decode(),
    }


async def test_the_courier_defers_a_retry_and_fails_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        {"status": "retry", "reason": "key newer than HQ's directory"},  # HopUnknownKey
        {"status": "accepted", "ack": _ack_by_unknown_key()},  # HopUnknownKey from the ack
        {"status": "refused", "reason": "expired"},  # HopRefused
        {"status": "accepted", "ack": "not an object"},  # HopRefused from the ack
    ]

    async def post_batch(*_args: object) -> list[dict[str, object]]:
        return list(answers)

    monkeypatch.setattr(courier, "post_batch", post_batch)
    store = FakeStore()
    c = _couriers(store)
    before = datetime.now(UTC)
    claimed = [_claimed(m) for m in ("m1", "m2", "m3", "m4")]
    assert await c._post("HQ", claimed) is True
    assert [d[0] for d in store.deferred] == ["m1", "m2"]
    # Deferred until the next directory poll, not backed off: the peer answered.
    assert all(d[3] >= before + timedelta(seconds=300) for d in store.deferred)
    assert "HQ" not in c.circuit
    assert [(m, reason) for m, _, reason in store.failed] == [
        ("m3", "refused by HQ: expired"),
        ("m4", "refused by HQ: malformed hop acknowledgement: not an object"),
    ]
    assert store.forwarded_ids == []


class Busy(Retry):
    """A Retry of a module the courier does not know by name."""


@pytest.mark.parametrize("failure", [PeerError("HQ unreachable"), Busy("HQ unreachable")])
async def test_the_courier_backs_off_a_batch_on_any_retry(
    monkeypatch: pytest.MonkeyPatch, failure: Retry
) -> None:
    async def post_batch(*_args: object) -> list[dict[str, object]]:
        raise failure

    monkeypatch.setattr(courier, "post_batch", post_batch)
    store = FakeStore()
    c = _couriers(store)
    assert await c._post("HQ", [_claimed("m1"), _claimed("m2")]) is False
    assert [(m, reason) for m, _, reason, _ in store.deferred] == [
        ("m1", "HQ unreachable"),
        ("m2", "HQ unreachable"),
    ]
    assert "HQ" in c.circuit and store.failed == []


# -- local delivery's hand-off: any Retry defers, any Refused is undeliverable ------------


def _local_delivery(failure: Exception) -> LocalDelivery:
    async def hand_off(*_args: object) -> None:
        raise failure

    relay = SimpleNamespace(retry_base_seconds=2.0, retry_max_seconds=60.0)
    ctx = SimpleNamespace(config=SimpleNamespace(relay=relay), here="M-PARIS")
    return LocalDelivery(
        ctx,  # type: ignore[arg-type]
        poke=lambda _peers: None,
        inbound=asyncio.Event(),
        metrics=Metrics(),
        events=EventBus(),
        crash=lambda _point: None,
        hand_off=hand_off,
    )


def _opened() -> Opened:
    record = EnvelopeRecord(
        message_id="m1",
        origin="HQ",
        destinations=("M-PARIS",),
        digest=b"\x01" * 32,
        created=NOW,
        expires=NOW + timedelta(days=1),
        priority="normal",
        received_from="HQ",
        data=b"",
    )
    return Opened(record, sealed=SimpleNamespace(), folder=Path("inbox/m1"))  # type: ignore[arg-type]


async def test_local_delivery_defers_a_smarthost_retry() -> None:
    worker = _local_delivery(SmarthostUnavailable("mail.example: 421 busy"))
    outcomes: list[Any] = []
    assert await worker._hand_on(_opened(), outcomes) is False
    assert outcomes == [] and "m1" in worker.retry_at and worker.failures["m1"] == 1


async def test_local_delivery_fails_a_smarthost_refusal() -> None:
    worker = _local_delivery(SmarthostRefused("mail.example refused: 550 no such user"))
    outcomes: list[Any] = []
    assert await worker._hand_on(_opened(), outcomes) is False
    assert [o.message_id for o in outcomes] == ["m1"] and "m1" not in worker.retry_at
    assert outcomes[0].failed == "mail.example refused: 550 no such user"


# -- mail delivery passes the smarthost's kinds on, naming the message ---------------------


@pytest.mark.parametrize(
    ("failure", "raised", "message"),
    [
        (SmarthostUnavailable("mx: 421 busy"), DeliveryDeferred, "mx: 421 busy"),
        (SmarthostRefused("mx refused: 550 no"), MailRefused, "m1: mx refused: 550 no"),
    ],
)
async def test_mail_delivery_keeps_the_smarthost_kind(
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    raised: type[Exception],
    message: str,
) -> None:
    async def send(*_args: object, **_kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(delivery, "send_via_smarthost", send)
    ctx = SimpleNamespace(
        here="M-PARIS",
        config=SimpleNamespace(
            delivery=SimpleNamespace(smarthost_address=("127.0.0.1", 25), starttls=True),
            smtp=SimpleNamespace(domain="valise.example"),
        ),
    )
    with pytest.raises(raised) as caught:
        await delivery._to_smarthost(
            ctx,  # type: ignore[arg-type]
            mail_from="",
            to="a@m-paris.valise.example",
            data=b"x",
            what="m1",
        )
    assert str(caught.value) == message
    assert isinstance(caught.value, Retry if raised is DeliveryDeferred else Refused)
