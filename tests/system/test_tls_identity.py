"""Taking over a site's TLS identity at HQ, tried on a live network (issue 9, hole 2).

The attacker holds a site's signing key (stolen) and one of the site's *unpinned*
certificates of the CA: the bootstrap certificate of its enrolment bundle, or an old
certificate the site replaced. With them they post to HQ's ``/v1/keys``: a TLS key of
their own for HQ to certify and pin, or the revocation of the site's real keys.
Every attempt is refused with a reason, and the directory does not change. The narrow
recovery case (a site whose TLS key HQ revoked replaces it, docs/KEYS.md) still works,
and only for a TLS key replacement, only until the site has a pinned TLS key again.
Also: two joins with one enrolment token, at the same time: exactly one succeeds.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector

from config.site import load_site_config
from crypto.keys import SigningKey
from crypto.x509 import generate_site_key, public_key_pin, site_public_key
from gateway.demo.network import Network, free_port
from gateway.site.context import load_keys, read_trust
from gateway.site.tls import client_context
from gateway.trust.enroll import EnrollError, add_site, join
from gateway.trust.key_updates import KeyUpdate, encode_update
from routing.directory import Directory, KeyState, parse_directory
from routing.key_changes import KeyChange
from tests.system.test_key_rotation import ENV, active, valise, wait_for


def _directory(site_dir: Path) -> Directory:
    return parse_directory((site_dir / "directory.xml").read_bytes(), read_trust(site_dir / "keys"))


def _signing_key(site_dir: Path) -> SigningKey:
    keys, _ = load_keys(load_site_config(site_dir, {}))
    return keys.signing


async def _post(
    port: int, path: str, cert: bytes, key: bytes, ca: bytes, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    ctx = client_context(cert, key, ca)
    async with ClientSession(connector=TCPConnector(ssl=ctx, force_close=True)) as session:
        url = f"https://127.0.0.1:{port}{path}"
        method = session.get(url) if body is None else session.post(url, data=body)
        async with method as resp:
            status, text = resp.status, await resp.text()
    await asyncio.sleep(0.1)  # let the TLS transport close before the loop ends
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {"raw": text[:80]}
    return status, answer if isinstance(answer, dict) else {"raw": answer}


async def _served(port: int, cert: bytes, key: bytes, ca: bytes) -> bytes:
    """The directory a site serves now (its running process, not its file)."""
    ctx = client_context(cert, key, ca)
    async with (
        ClientSession(connector=TCPConnector(ssl=ctx, force_close=True)) as session,
        session.get(f"https://127.0.0.1:{port}/v1/directory") as resp,
    ):
        data = await resp.read()
    await asyncio.sleep(0.1)
    return data


def _update(site: str, signer: SigningKey, *changes: KeyChange, tls_public: bytes = b"") -> bytes:
    return encode_update(KeyUpdate(site, datetime.now(UTC), changes, tls_public), signer)


def _attacker_tls(site: str) -> tuple[KeyChange, bytes]:
    """A TLS key of the attacker's, announced as the site's next key."""
    public = site_public_key(generate_site_key())
    return KeyChange(site, "tls", public_key_pin(public), KeyState.NEXT), public


def _attempts(site: str, signer: SigningKey, site_dir: Path) -> dict[str, bytes]:
    """What a thief with ``signer`` tries on /v1/keys: its own TLS key, a revocation of
    the site's signing key, of its TLS key."""
    d = _directory(site_dir).site(site)
    tls, public = _attacker_tls(site)
    live_tls = next(pin for pin, s in d.tls if s is KeyState.ACTIVE)
    return {
        "own TLS key": _update(site, signer, tls, tls_public=public),
        "revoke signing": _update(
            site, signer, KeyChange(site, "signing", signer.key_id, KeyState.REVOKED)
        ),
        "revoke TLS": _update(site, signer, KeyChange(site, "tls", live_tls, KeyState.REVOKED)),
    }


def _refused_and_nothing_changed(
    port: int, hq_dir: Path, site: str, cert: bytes, key: bytes, ca: bytes, signer: SigningKey
) -> None:
    before = _directory(hq_dir)
    for what, body in _attempts(site, signer, hq_dir).items():
        status, answer = asyncio.run(_post(port, "/v1/keys", cert, key, ca, body))
        assert status == 403, f"{what}: HQ answered {status} {answer.get('error')}"
        assert "error" in answer and "certificate" in answer["error"], (what, answer)
    after = _directory(hq_dir)
    assert after.serial == before.serial, "the directory changed"
    assert after.site(site) == before.site(site)


def test_the_bootstrap_certificate_and_a_stolen_signing_key_cannot_take_over(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=ENV) as net:
        hq = net.sites["HQ"]
        hanoi_dir = tmp_path / "M-HANOI"
        bundle_path = tmp_path / "M-HANOI.bundle"
        add_site(hq.directory, "M-HANOI", f"https://127.0.0.1:{free_port()}", bundle_path)
        asyncio.run(join(bundle_path, hanoi_dir, listen="127.0.0.1:0"))
        bundle = json.loads(bundle_path.read_text())  # kept by the attacker
        cert, key = bundle["bootstrap_cert"].encode(), bundle["bootstrap_key"].encode()
        ca = bundle["ca_pem"].encode()
        signer = _signing_key(hanoi_dir)
        _refused_and_nothing_changed(hq.port, hq.directory, "M-HANOI", cert, key, ca, signer)
        # The bootstrap certificate is spent once the join is done: refused everywhere.
        for path in ("/v1/directory", "/v1/hop"):
            status, answer = asyncio.run(_post(hq.port, path, cert, key, ca, None))
            assert status == 403, f"{path} with a spent bootstrap certificate: {status}"
            assert "certificate" in answer.get("error", ""), answer
        again = {"token": bundle["token"], "public_keys": "", "tls_public_key": ""}
        status, _ = asyncio.run(
            _post(hq.port, "/v1/enroll", cert, key, ca, json.dumps(again).encode())
        )
        assert status == 403


def test_an_old_replaced_certificate_and_a_stolen_signing_key_cannot_take_over(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=ENV) as net:
        hq, paris = net.sites["HQ"], net.sites["M-PARIS"]
        old_pin = active(paris.directory, "tls")
        old_cert = (paris.directory / "keys" / "tls.crt").read_bytes()
        old_key = (paris.directory / "keys" / "tls.key").read_bytes()
        ca = (paris.directory / "keys" / "ca.crt").read_bytes()
        rotate = ("keys", "rotate", "--kind", "tls", "--now", "--overlap", "0s")
        valise(*rotate, "--dir", str(paris.directory))
        valise("keys", "retire", old_pin, "--dir", str(paris.directory), check=False)
        trust = read_trust(hq.directory / "keys")
        wait_for(
            "HQ to serve the old TLS key retired",
            lambda: (
                parse_directory(asyncio.run(_served(hq.port, old_cert, old_key, ca)), trust)
                .site("M-PARIS")
                .states()[old_pin][1]
                is KeyState.RETIRED
            ),
        )
        signer = _signing_key(paris.directory)
        _refused_and_nothing_changed(
            hq.port, hq.directory, "M-PARIS", old_cert, old_key, ca, signer
        )


def test_a_revoked_tls_key_may_only_replace_itself_and_only_once(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=ENV) as net:
        hq, paris = net.sites["HQ"], net.sites["M-PARIS"]
        old_pin = active(paris.directory, "tls")
        cert = (paris.directory / "keys" / "tls.crt").read_bytes()
        key = (paris.directory / "keys" / "tls.key").read_bytes()
        ca = (paris.directory / "keys" / "ca.crt").read_bytes()
        signer = _signing_key(paris.directory)
        paris.stop()  # so that it does not replace its key before we try
        valise(
            "keys", "revoke", old_pin, "--reason", "drill: tls key lost", "--dir", str(hq.directory)
        )
        trust = read_trust(hq.directory / "keys")
        wait_for(
            "HQ to serve the revocation",
            lambda: (
                parse_directory(asyncio.run(_served(hq.port, cert, key, ca)), trust)
                .site("M-PARIS")
                .states()[old_pin][1]
                is KeyState.REVOKED
            ),
        )
        before = _directory(hq.directory)
        # In the recovery case, the revoked certificate may post a TLS key replacement
        # only: not a revocation, not another kind of key.
        encryption = next(
            k.key_id for k, s in before.site("M-PARIS").encryption if s is KeyState.ACTIVE
        )
        for what, body in {
            "revoke signing": _update(
                "M-PARIS", signer, KeyChange("M-PARIS", "signing", signer.key_id, KeyState.REVOKED)
            ),
            "revoke encryption": _update(
                "M-PARIS", signer, KeyChange("M-PARIS", "encryption", encryption, KeyState.REVOKED)
            ),
        }.items():
            status, answer = asyncio.run(_post(hq.port, "/v1/keys", cert, key, ca, body))
            assert status == 403, f"{what} over a revoked TLS key: {status} {answer.get('error')}"
            assert "recovery" in answer.get("error", ""), answer
        assert _directory(hq.directory).serial == before.serial
        # The site replaces its revoked TLS key by itself (the existing flow).
        paris.start()
        wait_for(
            "M-PARIS to replace its TLS key", lambda: active(paris.directory, "tls") != old_pin
        )
        wait_for(
            "HQ to show the replacement active",
            lambda: (
                active(paris.directory, "tls")
                in {
                    p
                    for p, s in _directory(hq.directory).site("M-PARIS").tls
                    if s is KeyState.ACTIVE
                }
            ),
        )
        # Recovery is over: the revoked certificate is refused like any unpinned one.
        _refused_and_nothing_changed(hq.port, hq.directory, "M-PARIS", cert, key, ca, signer)


def test_two_concurrent_joins_with_one_token_exactly_one_succeeds(tmp_path: Path) -> None:
    with Network(tmp_path, missions=(), env=ENV) as net:
        hq = net.sites["HQ"]
        bundle = tmp_path / "M-ROME.bundle"
        serial = _directory(hq.directory).serial
        add_site(hq.directory, "M-ROME", f"https://127.0.0.1:{free_port()}", bundle)

        async def both() -> list[object]:
            return await asyncio.gather(
                join(bundle, tmp_path / "rome-a", listen="127.0.0.1:0"),
                join(bundle, tmp_path / "rome-b", listen="127.0.0.1:0"),
                return_exceptions=True,
            )

        results = asyncio.run(both())
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1, f"joins with one token: {results}"
        assert isinstance(failed[0], EnrollError) and "token" in str(failed[0]), failed
        assert _directory(hq.directory).serial == serial + 1, "published more than once"
        entry = _directory(hq.directory).site("M-ROME")
        assert len([p for p, s in entry.tls if s is KeyState.ACTIVE]) == 1
