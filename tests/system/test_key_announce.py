"""A rotation announced before it is used, on a live network (HQ + two missions).

- ``valise keys rotate`` publishes the new key as next; the running site makes it
  active only once every mission has fetched a directory announcing it, so no site
  meets a signature, acknowledgement or certificate it does not know: documents flow
  without a single deferral for an unknown key.
- A mission that is down holds a rotation back until ``[keys] announce_seconds``, no
  longer; a mission cut off from HQ activates at its deadline and publishes it when
  HQ is back.
- After a TLS rotation is activated the client side drops its pooled connections: the
  next requests present the new certificate (HQ logs the pin it sees per connection),
  so even with no overlap at all there is no 403 on the way.
- HQ's ``GET /v1/directory/fetched``: only enrolled sites over mutual TLS with a
  pinned certificate read it, it is the same for everyone, and no mission can make
  it say that another has fetched a version.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientError, ClientSession, TCPConnector

from crypto.x509 import SiteCA, certificate_pin, issue_site_certificate
from gateway.demo.network import Network, SiteProcess, free_port
from gateway.site.keyring import load_ring, tls_files
from gateway.site.tls import client_context
from gateway.trust.announce import FETCHED_PATH
from gateway.trust.enroll import add_site, init_hub
from routing.announce import parse_answer
from tests.system.test_key_rotation import (
    ENV,
    active,
    directory_state,
    history_reasons,
    keys_of,
    send_one,
    valise,
    wait_for,
)
from tests.system.test_relay import _wait_receipts

# What a site says when it meets a key its directory does not list (gateway/relay/hop.py).
UNKNOWN_KEY = re.compile(r"not in our directory|which our directory does not accept")
ANNOUNCED = re.compile(
    r"announced as next in directory (\d+): activates when every site has fetched"
    r" directory \1, at the latest at (\S+) "
)


def valise_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``valise ARGS`` with ``env`` on top of ours (as an operator's VALISE_* settings)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, f"valise {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def announced_in(out: str) -> tuple[int, datetime]:
    m = ANNOUNCED.search(out)
    assert m, f"no announcement in: {out}"
    return int(m[1]), datetime.fromisoformat(m[2])


def state_in_ring(site_dir: Path, key_id: str) -> str:
    return next(k["state"] for k in keys_of(site_dir) if k["id"] == key_id)


def next_key(site_dir: Path, kind: str) -> str:
    return next(k["id"] for k in keys_of(site_dir) if k["kind"] == kind and k["state"] == "next")


def generated_key(out: str, kind: str) -> str:
    """The id `keys rotate` printed for the key it generated: read from its output, not
    the ring, where the running gateway may have activated it already (a short deadline
    on a loaded machine)."""
    m = re.search(rf"generated {kind} key (\S+) \(next\)", out)
    assert m, f"no generated {kind} key in: {out}"
    return m[1]


def fetched(hq: Path) -> dict[str, int | None]:
    rows = json.loads(valise("directory", "status", "--json", "--dir", str(hq)).stdout)
    return {r["site"]: r["fetched"] for r in rows}


def audit(site_dir: Path, action: str) -> list[dict[str, object]]:
    args = ("audit", "list", "--json", "--limit", "100000", "--dir", str(site_dir))
    rows = json.loads(valise(*args).stdout)
    return [r for r in rows if r["action"] == action]


def pause(site: SiteProcess) -> None:
    assert site.proc is not None
    os.killpg(site.proc.pid, signal.SIGSTOP)


def resume(site: SiteProcess) -> None:
    assert site.proc is not None
    os.killpg(site.proc.pid, signal.SIGCONT)


@contextmanager
def flowing(
    dirs: dict[str, Path], pairs: Callable[[], list[tuple[str, str]]]
) -> Iterator[dict[str, list[str]]]:
    """Documents sent every 50 ms over ``pairs()`` (read each time) until the block ends."""
    sent: dict[str, list[str]] = {s: [] for s in dirs}
    stop = threading.Event()
    errors: list[BaseException] = []

    def flow() -> None:
        i = 0
        try:
            while not stop.is_set():
                now = pairs()
                origin, to = now[i % len(now)]
                sent[origin].append(asyncio.run(send_one(dirs[origin], to, f"announce-{i}")))
                i += 1
                time.sleep(0.05)
        except BaseException as exc:  # reported below
            errors.append(exc)

    sender = threading.Thread(target=flow)
    sender.start()
    try:
        yield sent
    finally:
        stop.set()
        sender.join()
    assert not errors, errors


def unknown_key_deferrals(dirs: dict[str, Path], sent: dict[str, list[str]]) -> list[str]:
    found = []
    for ids in sent.values():
        for mid in ids:
            for site_dir in dirs.values():
                reasons = asyncio.run(history_reasons(site_dir, mid))
                found += [r for r in reasons if UNKNOWN_KEY.search(r)]
    return found


def all_receipts(net: Network, sent: dict[str, list[str]]) -> None:
    for origin, ids in sent.items():
        missing = asyncio.run(_wait_receipts(net, origin, ids, 90))
        assert not missing, f"{len(missing)} of {origin}'s documents got no receipt"


# -- (a) next until every site has fetched it, then active, with no deferral -------------


def test_a_rotation_waits_for_every_site_then_activates_with_no_deferral(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        dirs = {s: p.directory for s, p in net.sites.items()}
        old = active(hq.directory, "signing")
        pairs = [("HQ", "M-PARIS"), ("M-PARIS", "HQ")]
        with flowing(dirs, lambda: pairs) as sent:
            pause(hanoi)  # it fetches nothing while stopped
            try:
                out = valise("keys", "rotate", "--kind", "signing", "--dir", str(hq.directory))
                serial, _ = announced_in(out.stdout)
                new = next_key(hq.directory, "signing")
                assert directory_state(hq.directory, "HQ", new) == "next"
                wait_for(
                    "M-PARIS to fetch the announcement",
                    lambda: (fetched(hq.directory)["M-PARIS"] or 0) >= serial,
                )
                # M-HANOI has not fetched it: many key rounds later it is still next.
                for _ in range(10):
                    time.sleep(0.3)
                    assert state_in_ring(hq.directory, new) == "next"
                assert active(hq.directory, "signing") == old
                assert (fetched(hq.directory)["M-HANOI"] or 0) < serial
            finally:
                resume(hanoi)
            pairs += [("HQ", "M-HANOI"), ("M-HANOI", "M-PARIS"), ("M-PARIS", "M-HANOI")]
            wait_for("HQ to activate its new key", lambda: active(hq.directory, "signing") == new)
            assert (fetched(hq.directory)["M-HANOI"] or 0) >= serial
            time.sleep(2)  # documents keep flowing, signed with the new key
        events = audit(hq.directory, "key.activate")
        reason = f"every site has fetched directory {serial}"
        assert any(reason in str(e["detail"]) for e in events), events
        wait_for(
            "M-PARIS to see HQ's new key active",
            lambda: directory_state(paris.directory, "HQ", new) == "active",
        )
        assert sum(len(v) for v in sent.values()) >= 20
        all_receipts(net, sent)
        assert unknown_key_deferrals(dirs, sent) == []


# -- (b) a site that is down holds it back until announce_seconds, no longer -------------

SHORT = {"VALISE_KEYS_ANNOUNCE_SECONDS": "4"}  # the command's config sets the deadline
# Long enough that HQ is stopped before the deadline even on a loaded machine.
LONGER = {"VALISE_KEYS_ANNOUNCE_SECONDS": "20"}


def test_a_mission_that_is_down_holds_a_rotation_only_until_the_deadline(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        hanoi.stop()
        rotate = ("keys", "rotate", "--kind", "encryption", "--dir", str(hq.directory))
        out = valise_env(SHORT, *rotate).stdout
        serial, deadline = announced_in(out)
        new = generated_key(out, "encryption")
        wait_for(
            "M-PARIS to fetch the announcement",
            lambda: (fetched(hq.directory)["M-PARIS"] or 0) >= serial,
        )
        assert state_in_ring(hq.directory, new) == "next" or datetime.now(UTC) >= deadline
        wait_for("the deadline to pass", lambda: state_in_ring(hq.directory, new) == "active")
        assert datetime.now(UTC) >= deadline
        assert (fetched(hq.directory)["M-HANOI"] or 0) < serial  # it never fetched it
        events = [str(e["detail"]) for e in audit(hq.directory, "key.activate")]
        assert any("announce deadline" in e and new in e for e in events), events
        # M-HANOI comes back and learns the key; documents sealed to it open at HQ.
        hanoi.start()
        mid = asyncio.run(send_one(hanoi.directory, "HQ", "after-deadline"))
        assert not asyncio.run(_wait_receipts(net, "M-HANOI", [mid], 45))
        mid = asyncio.run(send_one(paris.directory, "HQ", "after-deadline"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 45))


def test_a_mission_cut_off_from_hq_activates_at_the_deadline_and_publishes_it_later(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        hanoi.stop()  # so that the version fetched by all stays behind
        rotate = ("keys", "rotate", "--kind", "signing", "--dir", str(paris.directory))
        out = valise_env(LONGER, *rotate).stdout
        _, deadline = announced_in(out)
        new = generated_key(out, "signing")
        assert directory_state(hq.directory, "M-PARIS", new) == "next"
        hq.stop()  # M-PARIS can neither ask who has fetched it nor publish
        wait_for(
            "M-PARIS to activate at its deadline",
            lambda: state_in_ring(paris.directory, new) == "active",
        )
        assert datetime.now(UTC) >= deadline
        assert directory_state(hq.directory, "M-PARIS", new) == "next"
        hq.start()
        wait_for(
            "M-PARIS to publish the activation HQ missed",
            lambda: directory_state(hq.directory, "M-PARIS", new) == "active",
        )
        mid = asyncio.run(send_one(paris.directory, "HQ", "signed-with-the-new-key"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 45))


# -- (c) the next requests after a TLS activation present the new certificate -----------


def log_events(site: SiteProcess, event: str) -> list[dict[str, object]]:
    found = []
    for line in site.log.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0 or f'"{event}"' not in line:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def test_after_a_tls_activation_the_next_requests_present_the_new_certificate(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris = net.sites["HQ"], net.sites["M-PARIS"]
        dirs = {s: p.directory for s, p in net.sites.items()}
        old = active(paris.directory, "tls")
        pairs = [("M-PARIS", "M-HANOI"), ("M-HANOI", "M-PARIS"), ("M-PARIS", "HQ")]
        with flowing(dirs, lambda: pairs) as sent:
            wait_for("M-PARIS to use pooled connections", lambda: len(sent["M-PARIS"]) > 10)
            # A short overlap: the old key is retired 3 s after the new one is active.
            # A pooled connection still presenting it then would get a 403 (the pools
            # must follow at activation, not when the overlap ends); 3 s, not 0, so a
            # request already in flight on the old connection at the activation is
            # not counted against it on a loaded machine (CI, 3 workers: one was).
            rotate = ("keys", "rotate", "--kind", "tls", "--overlap", "3s")
            valise(*rotate, "--dir", str(paris.directory))
            new = next(
                k["id"] for k in keys_of(paris.directory) if k["kind"] == "tls" and k["id"] != old
            )
            wait_for(
                "HQ to show the old TLS key retired",
                lambda: directory_state(hq.directory, "M-PARIS", old) == "retired",
            )
            assert active(paris.directory, "tls") == new
            time.sleep(2)  # documents keep flowing over the new connections
        all_receipts(net, sent)
        # M-PARIS reloaded its keys and closed its idle connections at the activation.
        loaded = [e for e in log_events(paris, "keys_loaded") if e.get("tls_changed")]
        assert loaded, "M-PARIS never reloaded its TLS key"
        # HQ saw the new certificate on the connections that followed ...
        seen = [e for e in log_events(hq, "peer_tls") if e.get("peer") == "M-PARIS"]
        assert any(e["pin"] == new for e in seen), seen
        # ... and never refused an old one: no 403 on the way, no deferral for it.
        refused = [e for e in log_events(hq, "refused") if e.get("peer") == "M-PARIS"]
        assert refused == []
        for mid in sent["M-PARIS"]:
            reasons = asyncio.run(history_reasons(paris.directory, mid))
            # (a receipt's history reason ends with its sha256 prefix, which may hold "403")
            assert not [r for r in reasons if re.search(r"\b403\b", r)], reasons


# -- (d) HQ's /v1/directory/fetched against a misbehaving site -------------------------


async def _get(
    port: int, ssl_ctx: ssl.SSLContext, path: str = FETCHED_PATH, method: str = "GET"
) -> tuple[int, bytes]:
    async with (
        ClientSession(connector=TCPConnector(ssl=ssl_ctx, force_close=True)) as session,
        session.request(method, f"https://127.0.0.1:{port}{path}") as resp,
    ):
        status, body = resp.status, await resp.read()
    await asyncio.sleep(0.1)  # let the TLS transport close before the loop ends
    return status, body


def _as(site_dir: Path, cert: bytes | None = None, key: bytes | None = None) -> ssl.SSLContext:
    """A client context with ``site_dir``'s active certificate (or the one given)."""
    ring = load_ring(site_dir / "keys")
    held_cert, held_key = tls_files(ring)
    ca = (site_dir / "keys" / "ca.crt").read_bytes()
    return client_context(cert or held_cert, key or held_key, ca)


def _refused_handshake(port: int, ssl_ctx: ssl.SSLContext) -> bool:
    try:
        asyncio.run(_get(port, ssl_ctx))
    except (ClientError, ssl.SSLError, OSError):
        return True
    return False


def test_the_fetched_route_is_for_pinned_sites_only_and_no_mission_moves_it(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        ca_pem = (hq.directory / "keys" / "ca.crt").read_bytes()
        wait_for(
            "both missions to fetch the current directory",
            lambda: all(v is not None for v in fetched(hq.directory).values()),
        )
        # Every enrolled site reads the same answer; asking is not fetching.
        status, body = asyncio.run(_get(hq.port, _as(paris.directory)))
        assert status == 200
        answer = parse_answer(body)
        before = fetched(hq.directory)
        for _ in range(5):
            status, again = asyncio.run(_get(hq.port, _as(hanoi.directory)))
            assert status == 200 and parse_answer(again).serial == answer.serial
        assert fetched(hq.directory)["M-HANOI"] == before["M-HANOI"]

        # No certificate, or one of another CA: no TLS session at all.
        bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bare.check_hostname = False
        bare.load_verify_locations(cadata=ca_pem.decode())
        assert _refused_handshake(hq.port, bare)
        other = SiteCA.create(now=datetime.now(UTC))
        cert, key = issue_site_certificate(other, "M-PARIS", now=datetime.now(UTC))
        assert _refused_handshake(hq.port, client_context(cert, key, ca_pem))

        # A bootstrap certificate HQ issued for a pending join: refused.
        bundle = add_site(hq.directory, "M-LIMA", "https://127.0.0.1:9", tmp_path / "l.bundle")
        boot = client_context(bundle.bootstrap_cert.encode(), bundle.bootstrap_key.encode(), ca_pem)
        assert asyncio.run(_get(hq.port, boot))[0] == 403

        # Read-only: no other method; a mission's channel has no such route.
        assert asyncio.run(_get(hq.port, _as(paris.directory), method="POST"))[0] == 405
        assert asyncio.run(_get(paris.port, _as(hanoi.directory)))[0] == 404

        # M-HANOI is down. M-PARIS fetches the new version again and again, naming
        # M-HANOI every way it can: HQ's record of M-HANOI does not move, nor does the
        # version fetched by all, and HQ's rotation waits.
        hanoi.stop()
        out = valise("keys", "rotate", "--kind", "signing", "--dir", str(hq.directory))
        serial, _ = announced_in(out.stdout)
        hanoi_before = fetched(hq.directory)["M-HANOI"]
        for path in (
            "/v1/directory?site=M-HANOI",
            "/v1/directory/?peer=M-HANOI",
            f"{FETCHED_PATH}?site=M-HANOI&serial={serial}",
        ):
            for _ in range(3):
                asyncio.run(_get(hq.port, _as(paris.directory), path=path))
        wait_for(
            "M-PARIS to fetch the announcement",
            lambda: (fetched(hq.directory)["M-PARIS"] or 0) >= serial,
        )
        assert fetched(hq.directory)["M-HANOI"] == hanoi_before
        status, body = asyncio.run(_get(hq.port, _as(paris.directory)))
        assert status == 200 and parse_answer(body).fetched_by_all < serial
        assert state_in_ring(hq.directory, next_key(hq.directory, "signing")) == "next"

        # A certificate HQ has seen retired (M-PARIS rotated its TLS key): refused.
        old_cert, old_key = tls_files(load_ring(paris.directory / "keys"))
        retired = _as(paris.directory, old_cert, old_key)
        assert asyncio.run(_get(hq.port, retired))[0] == 200  # pinned while active
        rotate = ("keys", "rotate", "--kind", "tls", "--now", "--overlap", "0s")
        valise(*rotate, "--dir", str(paris.directory))
        old_pin = certificate_pin(old_cert)
        wait_for(
            "HQ to show M-PARIS's old TLS key retired",
            lambda: directory_state(hq.directory, "M-PARIS", old_pin) == "retired",
        )
        wait_for(
            "HQ to refuse the retired certificate",
            lambda: asyncio.run(_get(hq.port, retired))[0] == 403,
        )


# -- the command alone: HQ with no mission, --dry-run, --now ---------------------------


def test_hq_alone_activates_at_once_and_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    hq = tmp_path / "HQ"
    init_hub(hq, site="HQ", listen=f"127.0.0.1:{free_port()}")

    def files() -> dict[str, bytes]:
        found = [*(hq / "keys").rglob("*"), hq / "directory.xml"]
        return {str(p): p.read_bytes() for p in found if p.is_file() and p.suffix != ".lock"}

    before = files()
    dry = valise("keys", "rotate", "--kind", "signing", "--dry-run", "--dir", str(hq))
    assert "would publish it as next; it activates when every site has fetched" in dry.stdout
    assert files() == before
    # No other site to wait for: the version fetched by all is the current one.
    out = valise("keys", "rotate", "--kind", "signing", "--dir", str(hq)).stdout
    assert "every site has fetched directory" in out and "activating" in out, out
    assert not [k for k in keys_of(hq) if k["state"] == "next"]
    # announce_seconds = 0 and --now: published and active at once, no announcement.
    for how in ((), ("--now",)):
        env = {} if how else {"VALISE_KEYS_ANNOUNCE_SECONDS": "0"}
        rotate = ("keys", "rotate", "--kind", "encryption", *how, "--overlap", "0s")
        out = valise_env(env, *rotate, "--dir", str(hq)).stdout
        assert "announced" not in out and "marked encryption key" in out, out
        valise(
            "keys",
            "retire",
            next(
                k["id"]
                for k in keys_of(hq)
                if k["kind"] == "encryption" and k["state"] == "retiring"
            ),
            "--dir",
            str(hq),
        )
