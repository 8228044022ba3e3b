"""The signed site directory: who the sites are, where they listen, and their keys.

Rules:
- HQ signs ``DIRECTORY_LABEL || <body>...</body>`` with its directory key; a site
  trusts only directories that verify under the directory key it was enrolled with.
- Versions only go forward: a site refuses a directory whose serial is lower than
  the one it holds (rollback), and one with the same serial but other bytes.
- A key's state is next, active, retiring, retired or revoked (the same states for
  signing keys, encryption keys and TLS key pins). Envelopes are sealed to the
  active encryption key and signed with the active signing key; signatures verify,
  and TLS peers are accepted, under next, active or retiring keys: a key is
  published as ``next`` before its owner starts using it, so every site that has
  the directory announcing it accepts it before the first use, whichever of the two
  versions (next, then active) it holds. Retired and revoked keys are refused, each
  with its own reason (:meth:`SiteEntry.refusal`).
- A key id (a TLS key: its pin) belongs to one site, for good: it appears once in the
  whole directory, listed with its key or, once the key is retired or revoked and
  dropped from the listing, among its site's ``retired-ids``. A directory that breaks
  this is refused by every writer and every reader (:class:`KeyReuseError`): a site
  cannot publish another site's key as its own (and then revoke it, or make HQ's
  operator revoke its copy), nor bring back a key once retired or revoked.
- A site may list the organ ids it serves (routing/organs.py), after its retired ids:
  an organ id is one site's, never a site id (:class:`OrganReuseError`). A directory
  that lists none is written exactly as before organs existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property

from lxml.etree import _Element

from crypto.errors import KeyFormatError, SignatureError
from crypto.keys import EncryptionKey, SigningKey, VerifyKey
from crypto.recipes import sign, verify
from envelope import xmlsafe as x
from envelope.errors import EnvelopeError, SchemaError, SignatureInvalid
from envelope.values import check_site_id, format_time, parse_time
from routing.organs import Organ, check_site_organs, organ_conflict

DIRECTORY_LABEL = b"valise/v1/directory\x00"
MAX_DIRECTORY_BYTES = 1024 * 1024
_HEX = frozenset("0123456789abcdef")
_KEY_ELEMENTS = frozenset({"signing-key", "encryption-key", "tls-pin"})


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"
    REVOKED = "revoked"


# States in which a published key is accepted (signatures, TLS pins, decryption).
USABLE: tuple[KeyState, ...] = (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRING)


class DirectoryError(Exception):
    """A directory was refused: forged, older than ours, or inconsistent."""


class KeyReuseError(DirectoryError):
    """A key id or TLS pin listed twice: for two sites, twice for one site, or again
    after it was retired or revoked."""


class OrganReuseError(DirectoryError):
    """An organ id listed twice (for one site or two), or equal to a site id."""


@dataclass(frozen=True)
class SiteEntry:
    site: str
    endpoint: str
    signing: tuple[tuple[VerifyKey, KeyState], ...]
    encryption: tuple[tuple[EncryptionKey, KeyState], ...]
    tls: tuple[tuple[str, KeyState], ...]  # SHA-256 SPKI pins of the site's TLS keys
    active: bool = True
    # Ids (TLS keys: pins) of this site's retired or revoked keys that are no longer
    # listed with their key (routing/key_changes.py prunes them): refused for good.
    retired_ids: tuple[str, ...] = ()
    # The organs this site serves (routing/organs.py), in the order HQ listed them: the
    # first is the one the site speaks as in the headers it exports.
    organs: tuple[Organ, ...] = ()

    def verify_keys(self) -> dict[str, VerifyKey]:
        """Keys whose signatures are accepted: next, active and retiring."""
        return {k.key_id: k for k, s in self.signing if s in USABLE}

    @property
    def tls_pins(self) -> tuple[str, ...]:
        """Pins of the TLS keys accepted for this site: next, active and retiring."""
        return tuple(pin for pin, s in self.tls if s in USABLE)

    def states(self) -> dict[str, tuple[str, KeyState]]:
        """Every key id (TLS keys by pin) of this site -> (kind, state)."""
        out: dict[str, tuple[str, KeyState]] = {}
        out.update({k.key_id: ("signing", s) for k, s in self.signing})
        out.update({k.key_id: ("encryption", s) for k, s in self.encryption})
        out.update({pin: ("tls", s) for pin, s in self.tls})
        return out

    def key_ids(self) -> list[str]:
        """Every key id and pin this site holds or held, listed or retired."""
        return [*self.states(), *self.retired_ids]

    def refusal(self, key_id: str) -> str:
        """Why ``key_id`` is not accepted for this site (for a refusal's reason)."""
        kind, state = self.states().get(key_id, ("", None))
        if state is None and key_id in self.retired_ids:
            return f"key {key_id} of {self.site} was retired or revoked (no longer listed)"
        if state is None:
            return f"key {key_id} is not a key of {self.site}"
        return f"{kind} key {key_id} of {self.site} is {state.value}"

    def active_encryption_key(self) -> EncryptionKey:
        for key, state in self.encryption:
            if state is KeyState.ACTIVE:
                return key
        raise DirectoryError(f"{self.site} has no active encryption key")


@dataclass(frozen=True)
class Directory:
    serial: int
    issued: datetime
    hub: str
    sites: tuple[SiteEntry, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)

    def site(self, site_id: str) -> SiteEntry:
        for entry in self.sites:
            if entry.site == site_id:
                return entry
        raise DirectoryError(f"site {site_id} is not in directory serial {self.serial}")

    def knows(self, site_id: str) -> bool:
        return any(e.site == site_id and e.active for e in self.sites)

    @cached_property
    def key_owners(self) -> dict[str, tuple[str, str, KeyState]]:
        """Every key id (TLS keys by pin) in this version -> (site, kind, state), built
        once per version: the hop checks look keys up for every envelope."""
        return {
            key_id: (entry.site, kind, state)
            for entry in self.sites
            for key_id, (kind, state) in entry.states().items()
        }

    def site_for_pin(self, pin: str) -> str | None:
        return next((e.site for e in self.sites if pin in e.tls_pins), None)

    @cached_property
    def organ_sites(self) -> dict[str, str]:
        """Every organ id in this version -> the site serving it, built once."""
        return {o.organ_id: e.site for e in self.sites for o in e.organs}

    def site_for_organ(self, organ_id: str) -> str | None:
        """The site serving ``organ_id`` (exactly as listed), disabled or not, or None."""
        return self.organ_sites.get(organ_id)


def check_unique_keys(sites: tuple[SiteEntry, ...]) -> None:
    """Every key id and TLS pin appears once in the directory, listed or retired.
    Raises KeyReuseError naming the key and both places."""
    owner: dict[str, str] = {}
    for e in sites:
        listed = [k.key_id for k, _ in e.signing] + [k.key_id for k, _ in e.encryption]
        for key_id in [*listed, *(pin for pin, _ in e.tls), *e.retired_ids]:
            if key_id in owner:
                where = "twice" if owner[key_id] == e.site else f"for {owner[key_id]} and"
                raise KeyReuseError(
                    f"key {key_id} is listed {where} for {e.site}: a key id or TLS pin"
                    " belongs to one site, once, for good"
                )
            owner[key_id] = e.site


def check_unique_organs(sites: tuple[SiteEntry, ...]) -> None:
    """Every organ id is one site's, once, and no site's id. Raises OrganReuseError
    naming the organ and both places."""
    conflict = organ_conflict((e.site, e.organs) for e in sites)
    if conflict is not None:
        raise OrganReuseError(conflict)


def _organs(e: SiteEntry) -> str:
    check_site_organs(e.site, e.organs)  # raises OrganError (a SchemaError)
    return "".join(f'<organ id="{o.organ_id}">{x.escape_text(o.name)}</organ>' for o in e.organs)


def _retired_ids(e: SiteEntry) -> str:
    for key_id in e.retired_ids:
        if len(key_id) not in (32, 64) or not _HEX.issuperset(key_id):
            raise SchemaError(f"retired id {key_id!r} of {e.site} is not a key id or pin")
    return f"<retired-ids>{' '.join(e.retired_ids)}</retired-ids>" if e.retired_ids else ""


def _body(d: Directory) -> bytes:
    check_site_id(d.hub)
    check_unique_keys(d.sites)
    check_unique_organs(d.sites)
    out = [
        f"<body><serial>{d.serial}</serial><issued>{format_time(d.issued)}</issued>",
        f"<hub>{d.hub}</hub>",
    ]
    seen = set()
    for e in d.sites:
        check_site_id(e.site)
        if e.site in seen:
            raise SchemaError(f"site {e.site} is listed twice")
        seen.add(e.site)
        status = "active" if e.active else "disabled"
        out.append(
            f'<site id="{e.site}" status="{status}">'
            f"<endpoint>{x.escape_text(e.endpoint)}</endpoint>"
        )
        out += [
            f'<signing-key id="{k.key_id}" state="{s.value}">{x.b64encode(k.raw)}</signing-key>'
            for k, s in e.signing
        ]
        out += [
            f'<encryption-key id="{k.key_id}" state="{s.value}">'
            f"{x.b64encode(k.raw)}</encryption-key>"
            for k, s in e.encryption
        ]
        out += [f'<tls-pin state="{s.value}">{pin}</tls-pin>' for pin, s in e.tls]
        out.append(_retired_ids(e))
        out.append(_organs(e))
        out.append("</site>")
    if d.hub not in seen:
        raise SchemaError("the hub must be listed")
    out.append("</body>")
    return "".join(out).encode()


def write_directory(d: Directory, key: SigningKey) -> bytes:
    body = _body(d)
    signature = sign(key, DIRECTORY_LABEL + body)
    return (
        x.start("directory", [("version", "1")], root=True).encode()
        + body
        + f'<signature key="{key.key_id}">{x.b64encode(signature)}</signature>'.encode()
        + b"</directory>"
    )


def parse_directory(data: bytes, trust: VerifyKey) -> Directory:
    """Parse and verify a directory under ``trust``. Raises DirectoryError."""
    try:
        root = x.parse(data, root="directory", max_bytes=MAX_DIRECTORY_BYTES)
        body_el, sig_el = root
        if sig_el.get("key") != trust.key_id:
            raise SignatureInvalid("the directory is not signed by the directory key we trust")
        body = _read_body(body_el)
        body_xml = _body(body)
        if (
            x.start("directory", [("version", "1")], root=True).encode() + body_xml
            != data[: data.index(b"<signature ")]
        ):
            raise SchemaError("the directory is not in the v1 form")
        try:
            verify(
                trust, x.b64decode(sig_el.text or "", "the signature"), DIRECTORY_LABEL + body_xml
            )
        except SignatureError:
            raise SignatureInvalid("the directory signature does not verify") from None
    except EnvelopeError as exc:
        raise DirectoryError(f"directory refused: {exc}") from None
    return Directory(body.serial, body.issued, body.hub, body.sites, raw=data)


def _read_body(el: _Element) -> Directory:
    serial_el, issued_el, hub_el, *site_els = el
    sites = []
    for s in site_els:
        endpoint_el, *key_els = s
        signing: list[tuple[VerifyKey, KeyState]] = []
        encryption: list[tuple[EncryptionKey, KeyState]] = []
        pins: list[tuple[str, KeyState]] = []
        retired: tuple[str, ...] = ()
        organs: list[Organ] = []
        try:
            for k in key_els:
                name = x.local_name(k)
                if name == "retired-ids":
                    retired = tuple((k.text or "").split(" "))
                    continue
                if name == "organ":
                    organs.append(Organ(k.get("id", ""), k.text or ""))
                    continue
                if name not in _KEY_ELEMENTS:  # the schema allows none: never guessed
                    raise SchemaError(f"unexpected <{name}> in the entry of {s.get('id')}")
                state = KeyState(k.get("state", ""))
                if name == "tls-pin":
                    pins.append((k.text or "", state))
                    continue
                raw = x.b64decode(k.text or "", name)
                if name == "signing-key":
                    vk = VerifyKey.from_bytes(raw)
                    _check_id(vk.key_id, k.get("id"))
                    signing.append((vk, state))
                else:
                    ek = EncryptionKey.from_bytes(raw)
                    _check_id(ek.key_id, k.get("id"))
                    encryption.append((ek, state))
        except KeyFormatError as exc:
            raise SchemaError(str(exc)) from None
        sites.append(
            SiteEntry(
                site=s.get("id", ""),
                endpoint=endpoint_el.text or "",
                signing=tuple(signing),
                encryption=tuple(encryption),
                tls=tuple(pins),
                active=s.get("status") == "active",
                retired_ids=retired,
                organs=tuple(organs),
            )
        )
    return Directory(
        serial=int(serial_el.text or "0"),
        issued=parse_time(issued_el.text or "", "issued"),
        hub=hub_el.text or "",
        sites=tuple(sites),
    )


def _check_id(actual: str, claimed: str | None) -> None:
    if actual != claimed:
        raise SchemaError("a key id is not the digest of its key")


def accept_update(held: Directory | None, new: Directory) -> bool:
    """Whether to replace ``held`` with ``new``. Raises DirectoryError on rollback."""
    if held is None or new.serial > held.serial:
        return True
    if new.serial < held.serial:
        raise DirectoryError(
            f"directory rollback refused: serial {new.serial} is older than {held.serial}"
        )
    if new.raw != held.raw:
        raise DirectoryError(f"directory serial {new.serial} differs from the one we hold")
    return False
