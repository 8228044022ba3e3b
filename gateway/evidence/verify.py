"""``valise evidence verify DIR``: check an evidence bundle offline, without any store.

Rules:
- Only the bundle's own files are read (and, when given, a trust anchor and a CA to
  compare the bundle's copies with). Nothing is fetched; no store is opened.
- Every check runs, in order, and reports ``ok``, ``failed`` (with the reason) or
  ``skipped`` (the piece is not in the bundle, so nothing about it is proven). A check
  whose prerequisite failed fails too, saying so. The bundle verifies when no check
  failed.
- Signatures are checked under the keys of the directory in force at the moment each
  one claims (the highest serial issued at or before it), and only active or retiring
  keys count; every directory must verify under the trust anchor.
- That claimed moment is the signer's; the trusted one is a time-stamp token's. The
  origin's and the receipt's signing keys must also be usable at the earliest genTime
  of the tokens over what they signed, and revoked by no directory issued before it; a
  signature by a key some directory of the bundle revokes, with no token over it, fails
  (``signing-time``).
- The envelope digest is recomputed from the envelope's own bytes; each receipt must be
  filed under the destination that signed it (receipts/SITE.vlz; a v1 bundle's one
  receipt.vlz under its signer), name the message, be signed by one of its
  destinations, be the only one from that site, and (when its content key is
  disclosed) decrypt to a document that names that digest, or the digest of an earlier
  copy of the envelope in copies/ that verified: a re-seal of it by its origin
  (``valise-evidence/3``, gateway/evidence/copies.py).
- The final ``delivery`` check names the destinations proved delivered (a receipt
  whose signature and content verified) and those without: a bundle of a partial
  delivery verifies as evidence of what it holds; a site whose receipt fails is never
  counted as delivered, and the failure fails the bundle.
- Any input, however damaged, gives a report: a bad file is a failed check, never an
  exception. Only a folder that cannot be read at all raises :class:`NotABundle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from envelope.errors import EnvelopeError
from gateway.evidence.checks import (
    check_certificates,
    check_directories,
    check_envelope,
    check_hops,
    check_keys,
    check_manifest,
    check_openssl,
    check_origin,
    check_trust,
    token_check,
)
from gateway.evidence.copies import check_copies
from gateway.evidence.layout import TIMESTAMPS, EvidenceError
from gateway.evidence.receipt_checks import check_delivery, destination_verdicts, receipt_checks
from gateway.evidence.state import BundleState, Failed, Skipped
from gateway.evidence.times import check_signing_times
from gateway.relay.hop import HopError
from routing.directory import DirectoryError

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
# What a damaged file can raise while a check parses it: each is the input's fault.
_INPUT_ERRORS = (
    EnvelopeError,
    DirectoryError,
    CryptoError,
    HopError,
    EvidenceError,
    ValueError,
    LookupError,
    OSError,
)


class NotABundle(EvidenceError):
    """The folder does not exist or cannot be listed."""


@dataclass(frozen=True)
class Check:
    """One check of a bundle: its name, ``ok`` / ``failed`` / ``skipped``, and why."""

    name: str
    status: str
    detail: str


@dataclass(frozen=True)
class Verification:
    """Every check of one bundle; it verifies when none failed."""

    folder: Path
    message_id: str | None
    checks: tuple[Check, ...]
    # Each destination the envelope names: proved, no receipt, receipt does not verify.
    destinations: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != FAILED for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "message": self.message_id,
            "ok": self.ok,
            "destinations": dict(self.destinations),
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


def _run(s: BundleState, name: str, fn: Callable[[BundleState], str]) -> Check:
    try:
        return Check(name, OK, fn(s))
    except Skipped as exc:
        return Check(name, SKIPPED, str(exc))
    except Failed as exc:
        return Check(name, FAILED, str(exc))
    except _INPUT_ERRORS as exc:
        return Check(name, FAILED, f"{type(exc).__name__}: {exc}".rstrip(": "))


def verify_bundle(
    folder: Path, *, trust: VerifyKey | None = None, ca_pem: bytes | None = None
) -> Verification:
    """Check the bundle in ``folder``; ``trust`` and ``ca_pem``, when given, must be the
    bundle's trust anchor and CA. Raises :class:`NotABundle` only if the folder cannot
    be read at all; every other problem is a failed check."""
    if not folder.is_dir():
        raise NotABundle(f"{folder} is not a folder")
    try:
        next(folder.iterdir(), None)
    except OSError as exc:
        raise NotABundle(f"{folder} cannot be read: {exc.strerror or exc}") from None
    s = BundleState(folder, trust, ca_pem)
    steps: list[tuple[str, Callable[[BundleState], str]]] = [
        ("manifest", check_manifest),
        ("trust-anchor", check_trust),
        ("directories", check_directories),
        ("envelope", check_envelope),
        ("origin-signature", check_origin),
        # Before the receipts: a receipt may name an earlier copy of the envelope.
        ("copies", check_copies),
    ]
    checks = [_run(s, name, fn) for name, fn in steps]
    # The receipts present are known once the manifest said the bundle's format.
    later = [*receipt_checks(s), ("hops", check_hops), ("keys", check_keys)]
    checks += [_run(s, name, fn) for name, fn in later]
    token_folder = s.path(TIMESTAMPS)
    tokens = sorted(p.name for p in token_folder.iterdir()) if token_folder.is_dir() else []
    checks += [_run(s, f"timestamp {name}", token_check(name)) for name in tokens]
    if not tokens:
        checks.append(Check("timestamps", SKIPPED, "no time-stamp tokens in the bundle"))
    checks.append(_run(s, "signing-time", check_signing_times))
    checks.append(_run(s, "certificates", check_certificates))
    checks.append(_run(s, "openssl-files", check_openssl))
    checks.append(_run(s, "delivery", check_delivery))
    message_id = s.message.head.routing.message_id if s.message is not None else s.manifest_id
    return Verification(folder, message_id, tuple(checks), destination_verdicts(s))
