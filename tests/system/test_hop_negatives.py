"""The hop endpoint under attack, against one real network on loopback.

HQ, M-PARIS and M-HANOI run as separate processes (gateway.demo.network.Network); every
case posts to HQ's ``/v1/hop`` with a client built here, from the site folders'
certificates and keys or from a foreign CA, and checks both that HQ refuses with a
clear reason and that HQ's store holds nothing of what was refused (or, for a
replay, exactly one copy). The directory rollback case drives the SiteContext API
of M-PARIS directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crypto.armor import load_signing_key
from crypto.keys import DecryptionKey, EncryptionKey, SigningKey
from crypto.x509 import SiteCA, issue_site_certificate
from envelope.framing import frame_prefix
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.trace import append_hop
from gateway.demo.network import Network
from gateway.relay.hop import MEDIA_TYPE, HopRefused, verify_ack
from gateway.site.context import load_site, read_trust
from gateway.site.keystore import SiteKeys, load_site_keys
from gateway.site.tls import client_context
from routing.directory import Directory, DirectoryError, parse_directory, write_directory

MAX_REQUEST_BYTES = 200_000
REQUEST_TIMEOUT_S = 2.0
ENV = {
    "VALISE_RELAY_LEASE_SECONDS": "2",
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    "VALISE_RELAY_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_S),
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "1",
    "VALISE_RELAY_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
}
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class World:
    net: Network
    hq_dir: Path
    paris_dir: Path
    url: str  # HQ's /v1/hop
    directory: Directory  # HQ's directory in force when the network came up
    paris: SiteKeys
    hanoi: SiteKeys

    def tls(self, site: str) -> tuple[bytes, bytes, bytes]:
        k = self.net.sites[site].directory / "keys"
        return (k / "tls.crt").read_bytes(), (k / "tls.key").read_bytes(), self.ca_pem

    @property
    def ca_pem(self) -> bytes:
        return (self.hq_dir / "keys" / "ca.crt").read_bytes()

    def client(self, site: str) -> ssl.SSLContext:
        """The genuine TLS client context of ``site``, expecting HQ at the other end."""
        return client_context(*self.tls(site), expect_site="HQ")

    def encryption_key(self, site: str) -> EncryptionKey:
        return self.directory.site(site).active_encryption_key()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    net = Network(tmp_path_factory.mktemp("hopnet"), env=ENV)
    try:
        net.start()
        hq = net.sites["HQ"]
        directory = parse_directory(
            (hq.directory / "directory.xml").read_bytes(), read_trust(hq.directory / "keys")
        )
        yield World(
            net=net,
            hq_dir=hq.directory,
            paris_dir=net.sites["M-PARIS"].directory,
            url=f"https://127.0.0.1:{hq.port}/v1/hop",
            directory=directory,
            paris=load_site_keys(net.sites["M-PARIS"].directory / "keys"),
            hanoi=load_site_keys(net.sites["M-HANOI"].directory / "keys"),
        )
    finally:
        net.close()


@pytest.fixture(autouse=True)
def hq_survives(world: World) -> Any:
    """Whatever a case threw at it, HQ is still serving afterwards."""
    yield
    assert world.net.sites["HQ"].running, "HQ died while handling a hostile request"


# -- helpers ----------------------------------------------------------------------------


def seal(
    *,
    origin: str,
    signer: SigningKey,
    to: dict[str, EncryptionKey],
    created: datetime | None = None,
    expires: datetime | None = None,
    part: bytes = b"hop negatives\n",
) -> tuple[str, bytes]:
    """A framed envelope from ``origin`` signed by ``signer``; (message id, bytes)."""
    routing = new_routing(
        origin=origin,
        destinations=list(to),
        now=created or datetime.now(UTC),
        expires=expires,
    )
    sealing = Sealing(
        routing=routing,
        sender=signer,
        recipients=[Recipient(site, key) for site, key in to.items()],
        sealed=SealedHeader(parts=(PartInfo("note.txt", "text/plain", len(part)),)),
    )
    return routing.message_id, seal_bytes(sealing, [part])


def paris_to_hanoi(world: World, **kwargs: Any) -> tuple[str, bytes]:
    """A genuine envelope: origin M-PARIS, its real signing key, to M-HANOI's real key."""
    return seal(
        origin="M-PARIS",
        signer=world.paris.signing,
        to={"M-HANOI": world.encryption_key("M-HANOI")},
        **kwargs,
    )


async def post(
    world: World, ctx: ssl.SSLContext, body: bytes, content_type: str = MEDIA_TYPE
) -> tuple[int, Any]:
    """POST ``body`` to HQ's /v1/hop; (status, JSON answer or text)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
        session.post(
            world.url, data=body, headers={"Content-Type": content_type}, timeout=CLIENT_TIMEOUT
        ) as resp,
    ):
        text, status = await resp.text(), resp.status
    # aiohttp's documented graceful close: let the TLS transport close (the server
    # may have closed the connection: a refused peer is disconnected) before
    # asyncio.run() ends the loop, or the socket is reported unclosed.
    await asyncio.sleep(0.25)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def post_sync(
    world: World, ctx: ssl.SSLContext, body: bytes, content_type: str = MEDIA_TYPE
) -> tuple[int, Any]:
    return asyncio.run(post(world, ctx, body, content_type))


def one_result(status: int, answer: Any) -> dict[str, Any]:
    assert status == 200, (
        f"a batch of valid framing should get 200 and per-envelope results, got {status}: {answer}"
    )
    assert isinstance(answer, dict) and isinstance(answer.get("results"), list), answer
    assert len(answer["results"]) == 1, f"one envelope posted, results: {answer['results']}"
    result: dict[str, Any] = answer["results"][0]
    return result


async def _hq_holds(world: World, message_id: str) -> tuple[bool, list[tuple[str | None, str]]]:
    ctx = await load_site(world.hq_dir)
    try:
        stored = await ctx.store.get_envelope(message_id) is not None
        history = [(t.peer, t.state) for t in await ctx.store.history(message_id)]
        return stored, history
    finally:
        await ctx.store.close()


def assert_nothing_stored(world: World, message_id: str, case: str) -> None:
    stored, history = asyncio.run(_hq_holds(world, message_id))
    assert not stored, f"{case}: HQ stored envelope {message_id} although it refused it"
    assert not history, f"{case}: HQ recorded transitions for refused {message_id}: {history}"


def assert_refused(result: dict[str, Any], *words: str, status: str = "refused") -> str:
    """A refusal, or with status="retry" the answer to a key HQ's directory does not list
    (never accepted; the sender may try again once both hold the same directory)."""
    assert result.get("status") == status, f"expected {status}, HQ answered {result}"
    reason = str(result.get("reason", ""))
    for word in words:
        assert word.lower() in reason.lower(), f"the reason {reason!r} should mention {word!r}"
    assert "ack" not in result, f"a refusal must carry no acknowledgement: {result}"
    return reason


def bare_client_context(ca_pem: bytes) -> ssl.SSLContext:
    """TLS 1.3, trusting the site CA, presenting no client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return ctx


def assert_tls_refused(world: World, ctx: ssl.SSLContext, case: str) -> None:
    message_id, data = paris_to_hanoi(world)
    try:
        status, answer = post_sync(world, ctx, data)
    except (aiohttp.ClientConnectionError, ssl.SSLError, ConnectionError):
        pass  # the handshake was refused: the client never got an HTTP answer
    else:
        pytest.fail(f"{case}: HQ answered {status} {answer!r} instead of refusing the handshake")
    assert_nothing_stored(world, message_id, case)


# -- 1, 2, 7: who may talk to /v1/hop ----------------------------------------------------


def test_no_client_certificate_is_refused_in_the_handshake(world: World) -> None:
    assert_tls_refused(world, bare_client_context(world.ca_pem), "no client certificate")


def test_certificate_from_another_ca_is_refused_in_the_handshake(world: World) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    other = SiteCA.create("Not the Valise site CA", now=now)
    cert, key = issue_site_certificate(other, "M-PARIS", now=now)
    ctx = client_context(cert, key, world.ca_pem, expect_site="HQ")
    assert_tls_refused(world, ctx, "certificate from a foreign CA")


def test_real_ca_certificate_for_an_unpinned_key_is_refused_403(world: World) -> None:
    k = world.hq_dir / "keys"
    ca = SiteCA.from_pem((k / "ca.crt").read_bytes(), (k / "ca.key").read_bytes())
    cert, key = issue_site_certificate(ca, "M-PARIS", now=datetime.now(UTC))
    message_id, data = paris_to_hanoi(world)
    status, answer = post_sync(world, client_context(cert, key, world.ca_pem), data)
    assert status == 403, f"an unpinned M-PARIS key must get 403, got {status}: {answer}"
    reason = str(answer.get("error", "")) if isinstance(answer, dict) else str(answer)
    assert "pinned" in reason and "M-PARIS" in reason, f"403 reason should name the pin: {reason!r}"
    assert_nothing_stored(world, message_id, "unpinned certificate")


def test_real_ca_certificate_of_a_site_not_in_the_directory_is_refused_403(world: World) -> None:
    k = world.hq_dir / "keys"
    ca = SiteCA.from_pem((k / "ca.crt").read_bytes(), (k / "ca.key").read_bytes())
    cert, key = issue_site_certificate(ca, "M-ROME", now=datetime.now(UTC))
    message_id, data = seal(
        origin="M-ROME", signer=SigningKey.generate(), to={"HQ": world.encryption_key("HQ")}
    )
    status, answer = post_sync(world, client_context(cert, key, world.ca_pem), data)
    assert status == 403, f"a site unknown to the directory must get 403, got {status}: {answer}"
    assert "M-ROME" in str(answer), f"the 403 reason should name the peer: {answer!r}"
    assert_nothing_stored(world, message_id, "site not in the directory")


# -- 3, 5, 8, 9: per-envelope refusals ---------------------------------------------------


def test_site_a_sending_as_site_b_is_refused(world: World) -> None:
    # A perfectly valid M-HANOI envelope (its real key), but posted by M-PARIS.
    message_id, data = seal(
        origin="M-HANOI",
        signer=world.hanoi.signing,
        to={"M-PARIS": world.encryption_key("M-PARIS")},
    )
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    assert_refused(result, "M-PARIS", "M-HANOI", "sender")
    assert_nothing_stored(world, message_id, "M-PARIS sending as M-HANOI")


def test_envelope_signed_by_a_key_not_in_the_directory_is_refused(world: World) -> None:
    rogue = SigningKey.generate()
    message_id, data = seal(
        origin="M-PARIS", signer=rogue, to={"M-HANOI": world.encryption_key("M-HANOI")}
    )
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    reason = assert_refused(result, "not in our directory", status="retry")
    assert rogue.key_id in reason, f"the reason should name the unknown key: {reason!r}"
    assert_nothing_stored(world, message_id, "signed by an unknown key")


def test_expired_envelope_is_refused(world: World) -> None:
    now = datetime.now(UTC)
    message_id, data = paris_to_hanoi(
        world, created=now - timedelta(hours=2), expires=now - timedelta(hours=1)
    )
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    assert_refused(result, "expired")
    assert_nothing_stored(world, message_id, "expired envelope")


def test_envelope_expiring_past_the_receivers_bound_is_refused(world: World) -> None:
    # A site (or a thief with its key) hand-seals an envelope that would sit in every
    # store on its way for decades: the receiver's [relay] max_expires_days bounds it.
    now = datetime.now(UTC)
    message_id, data = paris_to_hanoi(world, created=now, expires=now + timedelta(days=9000))
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    assert_refused(result, "max_expires_days")
    assert_nothing_stored(world, message_id, "an expiry decades ahead")
    _, within = paris_to_hanoi(world, created=now, expires=now + timedelta(days=80))
    assert one_result(*post_sync(world, world.client("M-PARIS"), within))["status"] == "accepted"


def test_stanza_wrapped_to_another_sites_key_is_refused(world: World) -> None:
    # A sender names, as the destination's key, a key the destination does not own: the
    # destination would search (and reload) its keys for it on every envelope.
    message_id, data = seal(
        origin="M-PARIS",
        signer=world.paris.signing,
        to={"M-HANOI": world.encryption_key("M-PARIS")},
    )
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    assert_refused(result, "not an encryption key of M-HANOI")
    assert_nothing_stored(world, message_id, "a stanza to another site's key")
    rogue_id, rogue = seal(
        origin="M-PARIS",
        signer=world.paris.signing,
        to={"M-HANOI": DecryptionKey.generate().public},
    )
    assert_refused(
        one_result(*post_sync(world, world.client("M-PARIS"), rogue)), "recipient", status="retry"
    )
    assert_nothing_stored(world, rogue_id, "a stanza to a key listed nowhere")


def test_unknown_destination_is_refused(world: World) -> None:
    message_id, data = seal(
        origin="M-PARIS",
        signer=world.paris.signing,
        to={"M-ROME": DecryptionKey.generate().public},
    )
    result = one_result(*post_sync(world, world.client("M-PARIS"), data))
    assert_refused(result, "unknown destination", "M-ROME")
    assert_nothing_stored(world, message_id, "unknown destination")


def test_one_bad_envelope_does_not_sink_the_good_one_in_a_batch(world: World) -> None:
    good_id, good = paris_to_hanoi(world)
    bad_id, bad = seal(
        origin="M-PARIS",
        signer=SigningKey.generate(),
        to={"M-HANOI": world.encryption_key("M-HANOI")},
    )
    status, answer = post_sync(world, world.client("M-PARIS"), bad + good)
    assert status == 200, f"mixed batch: expected 200, got {status}: {answer}"
    results = answer["results"]
    assert [r.get("status") for r in results] == ["retry", "accepted"], results
    assert results[1]["id"] == good_id
    assert_nothing_stored(world, bad_id, "the bad envelope of a mixed batch")
    stored, _ = asyncio.run(_hq_holds(world, good_id))
    assert stored, "the good envelope of a mixed batch was acknowledged but not stored"


def test_hop_record_naming_another_site_but_signed_by_the_peer_is_refused(world: World) -> None:
    # M-PARIS forges a trace: a hop record claiming M-HANOI, signed with M-PARIS's own
    # key, then its own (genuine) hop record, so that the hop's sender is still M-PARIS.
    # "Every hop record verifies under its site's keys": the first one must not.
    message_id, data = paris_to_hanoi(world)
    at = datetime.now(UTC)
    parsed, offset = parse_framed_head(data)
    _, forged_xml = append_hop(
        parsed, site="M-HANOI", key=world.paris.signing, received_from="M-PARIS", at=at
    )
    forged = frame_prefix(forged_xml) + forged_xml + data[offset:]
    parsed, offset = parse_framed_head(forged)
    _, own_xml = append_hop(
        parsed, site="M-PARIS", key=world.paris.signing, received_from="M-HANOI", at=at
    )
    body = frame_prefix(own_xml) + own_xml + forged[offset:]
    result = one_result(*post_sync(world, world.client("M-PARIS"), body))
    assert_refused(result, "hop 1", "M-HANOI")
    assert_nothing_stored(world, message_id, "hop record forged in another site's name")


# -- 4: replay ---------------------------------------------------------------------------


def test_replayed_envelope_gets_the_same_ack_and_is_stored_once(world: World) -> None:
    message_id, data = paris_to_hanoi(world)
    ctx = world.client("M-PARIS")
    first = one_result(*post_sync(world, ctx, data))
    second = one_result(*post_sync(world, ctx, data))
    assert first.get("status") == "accepted", f"first post should be accepted: {first}"
    assert second.get("status") == "duplicate", f"the replay should be a duplicate: {second}"
    assert first.get("id") == second.get("id") == message_id, (first, second)
    assert second.get("ack") == first.get("ack"), (
        f"the replay must get the first acknowledgement back:\n{first}\n{second}"
    )
    parsed, _ = parse_framed_head(data)
    try:
        verify_ack(first["ack"], parsed, world.directory.site("HQ").verify_keys())
    except HopRefused as exc:
        pytest.fail(f"HQ's acknowledgement does not verify under HQ's keys: {exc}")
    assert first["ack"]["site"] == "HQ" and first["ack"]["from"] == "M-PARIS", first["ack"]

    stored, history = asyncio.run(_hq_holds(world, message_id))
    assert stored, f"the accepted envelope {message_id} is not in HQ's store"
    queued = [h for h in history if h[1] == "queued"]
    received = [h for h in history if h[1] == "received"]
    assert queued == [("M-HANOI", "queued")], f"queued once, towards M-HANOI only: {history}"
    assert not received, f"HQ is not a destination, yet recorded 'received': {history}"


def test_same_envelope_twice_in_one_batch_is_stored_once(world: World) -> None:
    message_id, data = paris_to_hanoi(world)
    status, answer = post_sync(world, world.client("M-PARIS"), data + data)
    assert status == 200, f"expected 200, got {status}: {answer}"
    results = answer["results"]
    assert len(results) == 2, results
    statuses = sorted(str(r.get("status")) for r in results)
    assert statuses == ["accepted", "duplicate"], f"one accepted, one duplicate: {results}"
    assert results[0].get("ack") == results[1].get("ack"), f"one acknowledgement: {results}"
    stored, history = asyncio.run(_hq_holds(world, message_id))
    assert stored
    assert [h for h in history if h[1] == "queued"] == [("M-HANOI", "queued")], history


# -- 10, 11, 12: the request itself ------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00garbage, not a batch\xff" * 8,
        b"VALISE\x00\x01" + (40).to_bytes(4, "big") + b"<envelope>not the head</envelope>" * 2,
        b"VALISE\x00\x01\x7f\xff\xff\xff",
        b"VALISE\x00\x01",
    ],
    ids=["random-bytes", "bad-head-xml", "huge-head-length", "bare-magic"],
)
def test_malformed_batch_is_refused_400_and_nothing_of_it_is_stored(
    world: World, garbage: bytes
) -> None:
    # A valid envelope first: the whole batch is refused, so it must not be stored either.
    message_id, good = paris_to_hanoi(world)
    status, answer = post_sync(world, world.client("M-PARIS"), good + garbage)
    assert status == 400, f"a malformed batch must get 400, got {status}: {answer!r}"
    assert "batch refused" in str(answer), f"the 400 should say why: {answer!r}"
    assert_nothing_stored(world, message_id, "valid envelope in a malformed batch")


def test_truncated_envelope_is_refused_400(world: World) -> None:
    message_id, data = paris_to_hanoi(world)
    status, answer = post_sync(world, world.client("M-PARIS"), data[:-1])
    assert status == 400, f"a truncated envelope must get 400, got {status}: {answer!r}"
    assert "truncated" in str(answer), answer
    assert_nothing_stored(world, message_id, "truncated envelope")


def test_wrong_content_type_is_refused_415(world: World) -> None:
    message_id, data = paris_to_hanoi(world)
    status, answer = post_sync(world, world.client("M-PARIS"), data, "application/octet-stream")
    assert status == 415, f"a wrong Content-Type must get 415, got {status}: {answer!r}"
    assert MEDIA_TYPE in str(answer), f"the 415 should name the expected type: {answer!r}"
    assert_nothing_stored(world, message_id, "wrong Content-Type")


def test_oversized_request_is_refused_413(world: World) -> None:
    message_id, data = paris_to_hanoi(world, part=b"\x42" * (MAX_REQUEST_BYTES + 50_000))
    assert len(data) > MAX_REQUEST_BYTES
    status, answer = post_sync(world, world.client("M-PARIS"), data)
    assert status == 413, (
        f"a body over {MAX_REQUEST_BYTES} B must get 413, got {status}: {answer!r}"
    )
    assert_nothing_stored(world, message_id, "oversized request")


async def _slow_post(world: World, data: bytes) -> tuple[bytes, float]:
    """Send the headers and half the body, then one byte every 0.5 s; return the first
    response line (b"" if HQ closed) and how long HQ took to give up."""
    port = world.net.sites["HQ"].port
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=world.client("M-PARIS"), server_hostname="HQ"
    )
    head = (
        "POST /v1/hop HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: {MEDIA_TYPE}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    start = time.monotonic()
    writer.write(head + data[: len(data) // 2])
    await writer.drain()

    async def trickle() -> None:
        for i in range(len(data) // 2, len(data) - 1):
            await asyncio.sleep(0.5)
            writer.write(data[i : i + 1])
            await writer.drain()

    trickler = asyncio.create_task(trickle())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=REQUEST_TIMEOUT_S + 8)
    except (ConnectionError, ssl.SSLError):
        line = b""
    finally:
        elapsed = time.monotonic() - start
        trickler.cancel()
        await asyncio.gather(trickler, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return line, elapsed


def test_slow_body_is_cut_off_408_and_nothing_stored(world: World) -> None:
    message_id, data = paris_to_hanoi(world, part=b"slow" * 2000)
    try:
        line, elapsed = asyncio.run(_slow_post(world, data))
    except TimeoutError:
        pytest.fail(f"HQ kept a trickling body open past {REQUEST_TIMEOUT_S + 8} s")
    assert line == b"" or line.startswith(b"HTTP/1.1 408"), (
        f"a body slower than {REQUEST_TIMEOUT_S} s should get 408 or a closed connection,"
        f" got {line!r}"
    )
    assert elapsed >= REQUEST_TIMEOUT_S - 0.5, (
        f"HQ gave up after {elapsed:.1f} s, before its timeout"
    )
    assert_nothing_stored(world, message_id, "slow body")


# -- 6: directory versions ---------------------------------------------------------------


def _wait_paris_directory(world: World) -> bytes:
    """M-PARIS polls HQ every second; let it catch up so both hold the same version."""
    hq_bytes = (world.hq_dir / "directory.xml").read_bytes()
    deadline = time.monotonic() + 15
    while (world.paris_dir / "directory.xml").read_bytes() != hq_bytes:
        assert time.monotonic() < deadline, "M-PARIS never fetched HQ's current directory"
        time.sleep(0.2)
    return hq_bytes


async def _directory_cases(world: World, hq_bytes: bytes) -> None:
    on_disk = (world.paris_dir / "directory.xml").read_bytes()
    ctx = await load_site(world.paris_dir)
    try:
        held = ctx.directory
        assert held.raw == hq_bytes == on_disk
        assert held.serial >= 2, f"two enrollments happened, serial is {held.serial}"
        current = parse_directory(hq_bytes, ctx.trust)
        hq_key = load_signing_key((world.hq_dir / "keys" / "directory.key").read_bytes())
        now = datetime.now(UTC)

        def refused(data: bytes, *words: str, case: str) -> None:
            with pytest.raises(DirectoryError) as info:
                ctx.install_directory(data)
            for word in words:
                assert word in str(info.value), f"{case}: {info.value} should mention {word!r}"
            assert (world.paris_dir / "directory.xml").read_bytes() == on_disk, (
                f"{case}: M-PARIS/directory.xml changed although the directory was refused"
            )
            assert ctx.directory is held, f"{case}: M-PARIS adopted a refused directory"

        older = Directory(serial=held.serial - 1, issued=now, hub=current.hub, sites=current.sites)
        refused(write_directory(older, hq_key), "rollback", case="older serial, HQ's real key")

        same = Directory(serial=held.serial, issued=now, hub=current.hub, sites=current.sites[:1])
        refused(write_directory(same, hq_key), "differs", case="same serial, other content")

        forger = SigningKey.generate()
        newer = Directory(serial=held.serial + 5, issued=now, hub=current.hub, sites=current.sites)
        refused(write_directory(newer, forger), "not signed", case="newer, another key")

        spoofed = write_directory(newer, forger).replace(
            f'key="{forger.key_id}"'.encode(), f'key="{ctx.trust.key_id}"'.encode()
        )
        refused(spoofed, "does not verify", case="newer, another key claiming HQ's key id")

        # The control: the same newer directory under HQ's real key is adopted.
        assert ctx.install_directory(write_directory(newer, hq_key)) is True
        assert ctx.directory.serial == held.serial + 5
    finally:
        await ctx.store.close()
        # Put M-PARIS's folder back as it was: the control case wrote the newer version.
        (world.paris_dir / "directory.xml").write_bytes(on_disk)


def test_mission_refuses_rolled_back_or_forged_directories(world: World) -> None:
    hq_bytes = _wait_paris_directory(world)
    asyncio.run(_directory_cases(world, hq_bytes))
