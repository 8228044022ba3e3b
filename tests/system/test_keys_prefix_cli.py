"""`valise keys list` prints ids that `keys revoke|activate|retire` take back (a unique
prefix, like git), and a prefix that is short, unknown or ambiguous changes nothing.
`valise directory show --json` carries the directory's sites and keys.

No network: an HQ site folder and missions that exist only in its directory
(tests/support/offline_hq.py)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from gateway.cli.app import ExitCode
from routing.key_prefix import LIST_PREFIX_CHARS, MIN_PREFIX_CHARS
from tests.support.offline_hq import add_mission, make_hq, valise


@pytest.fixture()
def hq(tmp_path: Path) -> Path:
    return make_hq(tmp_path)


def _ring(hq: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(
        valise("keys", "list", "--json", "--dir", str(hq)).stdout
    )
    return rows


def _shown_ids(hq: Path) -> list[str]:
    lines = valise("keys", "list", "--dir", str(hq)).stdout.splitlines()[1:]
    return [line.split()[1] for line in lines]


def _directory(hq: Path) -> dict:  # type: ignore[type-arg]
    out = valise("directory", "show", "--json", "--dir", str(hq))
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _state_of(hq: Path, key_id: str) -> tuple[str, str]:
    for site in _directory(hq)["sites"]:
        for k in site["keys"]:
            if k["id"] == key_id:
                return site["id"], k["state"]
    raise AssertionError(f"{key_id} not in the directory")


def test_keys_list_prints_unique_prefixes_that_the_commands_take_back(hq: Path) -> None:
    add_mission(hq, "M-HANOI")
    full = [r["id"] for r in _ring(hq)]
    shown = _shown_ids(hq)
    assert "…" not in valise("keys", "list", "--dir", str(hq)).stdout
    assert len(shown) == len(full)
    for prefix, key_id in zip(shown, full, strict=True):
        assert key_id.startswith(prefix) and len(prefix) >= LIST_PREFIX_CHARS
    # Each printed ring id is accepted by revoke (dry run: nothing changes).
    ring = {r["id"]: r for r in _ring(hq) if r["kind"] in ("signing", "encryption", "tls")}
    for prefix in shown:
        matches = [k for k in ring if k.startswith(prefix)]
        if not matches:
            continue  # HQ's directory key, CA, TSA: listed, not revoked this way
        (key_id,) = matches
        out = valise("keys", "revoke", prefix, "--reason", "x", "--dry-run", "--dir", str(hq))
        assert out.exit_code == 0, out.output
        assert key_id in out.stdout
    serial = _directory(hq)["serial"]
    assert _directory(hq)["serial"] == serial


def test_revoke_by_prefix_at_hq_revokes_a_missions_key(hq: Path) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    key_id = hanoi.decryption.key_id
    out = valise(
        "keys", "revoke", key_id[:MIN_PREFIX_CHARS].upper(), "--reason", "lost", "--dir", str(hq)
    )
    assert out.exit_code == 0, out.output
    assert _state_of(hq, key_id) == ("M-HANOI", "revoked")


def test_a_prefix_that_also_matches_another_sites_key_at_hq_is_refused(hq: Path) -> None:
    own = next(r["id"] for r in _ring(hq) if r["kind"] == "signing")
    # A mission whose TLS pin begins with HQ's whole signing key id: every prefix of
    # HQ's key id also matches the mission's key.
    pin = own + secrets.token_hex(16)
    add_mission(hq, "M-HANOI", tls_pin=pin)
    before = _directory(hq)
    for prefix in (own[:MIN_PREFIX_CHARS], own[:20], own[:-1]):
        out = valise("keys", "revoke", prefix, "--reason", "stolen", "--dir", str(hq))
        assert out.exit_code == ExitCode.USAGE, out.output
        assert "ambiguous" in out.stderr and own in out.stderr and pin in out.stderr
        assert "M-HANOI tls" in out.stderr and "HQ signing" in out.stderr
    assert _directory(hq) == before
    assert next(r for r in _ring(hq) if r["id"] == own)["state"] == "active"
    # keys list shows HQ's key in full (no shorter prefix is unique); it resolves to it.
    assert own in _shown_ids(hq)
    dry = valise("keys", "revoke", own, "--reason", "x", "--dry-run", "--dir", str(hq))
    assert dry.exit_code == 0 and f"would revoke signing key {own}" in dry.stdout


@pytest.mark.parametrize("n", [1, MIN_PREFIX_CHARS - 1])
def test_a_short_prefix_is_refused_even_if_unique(hq: Path, n: int) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    before = _directory(hq)
    for command in (["revoke", "--reason", "x"], ["retire"], ["activate"]):
        verb, *rest = command
        out = valise("keys", verb, hanoi.decryption.key_id[:n], *rest, "--dir", str(hq))
        assert out.exit_code == ExitCode.USAGE, out.output
        assert f"at least {MIN_PREFIX_CHARS}" in out.stderr
    assert _directory(hq) == before


def test_unknown_or_malformed_ids_and_other_sites_keys_for_ring_commands(hq: Path) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    before = _directory(hq)
    cases = [
        (["revoke", "0" * 32, "--reason", "x"], "no key id starts with"),
        (["revoke", "not-hex!", "--reason", "x"], "is not a key id"),
        # activate and retire act on this site's ring only: another site's key is unknown.
        (["retire", hanoi.decryption.key_id], "no key id starts with"),
        (["activate", hanoi.signing.public.key_id[:10]], "no key id starts with"),
    ]
    for args, message in cases:
        out = valise("keys", *args, "--dir", str(hq))
        assert out.exit_code == ExitCode.USAGE, out.output
        assert message in out.stderr and out.stderr.count("\n") == 1
    assert _directory(hq) == before


def test_directory_show_json_has_every_site_and_key(hq: Path) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    d = _directory(hq)
    assert set(d) == {"serial", "issued", "hub", "signed_by", "sites"}
    assert d["hub"] == "HQ" and d["serial"] == 2
    trust = next(r["id"] for r in _ring(hq) if r["kind"] == "directory")
    assert d["signed_by"] == trust
    sites = {s["id"]: s for s in d["sites"]}
    assert sites["HQ"]["role"] == "hub" and sites["M-HANOI"]["role"] is None
    keys = {(k["kind"], k["id"], k["state"]) for k in sites["M-HANOI"]["keys"]}
    assert keys == {
        ("signing", hanoi.signing.public.key_id, "active"),
        ("encryption", hanoi.decryption.key_id, "active"),
        ("tls", hanoi.tls_pin, "active"),
    }
    assert sites["M-HANOI"]["active"] is True and sites["M-HANOI"]["endpoint"].startswith("https")
    text = valise("directory", "show", "--dir", str(hq)).stdout
    assert text.startswith("serial 2") and hanoi.decryption.key_id in text
    both = valise("directory", "show", "--json", "--xml", "--dir", str(hq))
    assert both.exit_code == ExitCode.USAGE
