"""Verifying the audit log: walk the chain and the checkpoints, report the first problem.

Rules:
- The chain is read in seq order from seq 1. Each entry must have the next seq (a gap:
  ``removed``), hash to its stored hash (else ``changed``, or ``reordered`` /
  ``removed`` when the fields hash correctly at another seq: the entry was moved, or
  entries before it were deleted and the rest renumbered) and link to the previous
  entry's hash (else the previous entry was rewritten: ``changed``).
- Every checkpoint must be signed by a known signing key of this site over
  :func:`~gateway.store.audit_chain.checkpoint_message` (else ``checkpoint``), carry a
  valid time-stamp token if it has one, and name the hash the chain has at its seq
  (else the entries since the checkpoint before it were rewritten: ``changed``). A
  checkpoint beyond the end of the chain means entries were cut off (``removed``), and
  an ``audit.checkpoint`` entry without its checkpoint row means one was deleted.
- The time a checkpoint was signed is its token's genTime, never its own ``at`` (the
  signer chose that): the signing key must be usable in the directory in force at the
  token's time, and not revoked by any directory issued before it. A checkpoint
  without a token is only a warning, unless its key was ever revoked: then nothing
  shows it was signed before the revocation, and it fails (:class:`KeyHistory`).
- Only a token HQ's witness issued (its checkpoint policy) times a checkpoint: a valid
  token of another policy (``/v1/timestamp`` stamps any digest asked) is
  :class:`NotWitnessToken`, a warning, and the checkpoint is judged as untimed.
- HQ's witness statement (the latest checkpoint HQ saw of this chain, from outside
  this store) must be matched: a chain that ends before the witnessed seq was cut
  (``removed``), one with another hash there forks from what HQ saw (``forked``).
- Only the first problem in the chain is reported (everything after it is suspect);
  checkpoint signature problems are all listed. Entries after the last checkpoint are
  ``unchecked``: intact as far as the chain shows, but not yet signed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from crypto.recipes import verify
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    ZERO_HASH,
    AuditCheckpoint,
    AuditEntry,
    AuditFormatError,
    Witness,
    canonical_time,
    checkpoint_message,
    hash_of,
)
from routing.directory import USABLE, Directory, DirectoryError, KeyState

# How far from its place a moved entry is looked for (a problem is classified only).
SEARCH_WINDOW = 64

# (token, sha256 of signed bytes) -> the token's genTime; raises when it does not verify
# (NotWitnessToken when it verifies but was not issued through HQ's witness).
TokenCheck = Callable[[bytes, bytes], datetime]


class NotWitnessToken(Exception):
    """A valid token of HQ's TSA under another policy than the witness's: it proves the
    digest existed then, not that HQ witnessed the checkpoint, so it times nothing."""


def in_force(directories: Iterable[Directory], moment: datetime) -> Directory | None:
    """The directory in force at ``moment``: the highest serial issued at or before it."""
    candidates = [d for d in directories if d.issued <= moment]
    return max(candidates, key=lambda d: d.serial, default=None)


@dataclass(frozen=True)
class KeyHistory:
    """The states a site's signing keys had, from every directory version held."""

    site: str
    directories: tuple[Directory, ...]

    def _state(self, d: Directory, key_id: str) -> KeyState | None:
        try:
            return d.site(self.site).states().get(key_id, ("", None))[1]
        except DirectoryError:
            return None

    def revoked_by(self, key_id: str, before: datetime | None = None) -> Directory | None:
        """The first directory (issued at or before ``before``, if given) that lists
        ``key_id`` as revoked."""
        revoking = [
            d
            for d in self.directories
            if (before is None or d.issued <= before) and self._state(d, key_id) is KeyState.REVOKED
        ]
        return min(revoking, key=lambda d: d.serial, default=None)

    def refusal(self, key_id: str, moment: datetime | None) -> str | None:
        """Why a signature by ``key_id`` made at the trusted ``moment`` (None: no trusted
        time) is not accepted, or None when it is."""
        if moment is None:
            d = self.revoked_by(key_id)
            if d is None:
                return None
            return (
                f"key {key_id} is revoked (directory serial {d.serial}) and no time-stamp "
                "token shows the signature was made before"
            )
        d = self.revoked_by(key_id, moment)
        if d is not None:
            return (
                f"key {key_id} was revoked (directory serial {d.serial}) before the "
                f"token's time {canonical_time(moment)}"
            )
        d = in_force(self.directories, moment)
        if d is None:
            return f"no directory held was in force at the token's time {canonical_time(moment)}"
        state = self._state(d, key_id)
        if state not in USABLE:
            said = "not listed" if state is None else state.value
            return (
                f"key {key_id} was {said} in directory serial {d.serial}, in force at the "
                f"token's time {canonical_time(moment)}"
            )
        return None


@dataclass(frozen=True)
class Finding:
    """One problem: the first seq it concerns, its kind and what was seen."""

    seq: int
    kind: str  # changed | removed | reordered | checkpoint | forked
    what: str


@dataclass
class Report:
    """What a walk found. ``ok`` when there is no finding at all."""

    entries: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    checkpoints_verified: int = 0
    last_checkpoint: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    witness: Witness | None = None  # HQ's statement the chain was compared with

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.seq) if self.findings else None

    @property
    def unchecked(self) -> tuple[int, int] | None:
        """(first, last) seq of the entries no checkpoint covers yet."""
        if self.last_seq > self.last_checkpoint:
            return (self.last_checkpoint + 1, self.last_seq)
        return None

    def as_json(self) -> dict[str, object]:
        first = self.first
        return {
            "ok": self.ok,
            "entries": self.entries,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "last_checkpoint": self.last_checkpoint,
            "first": None if first is None else _finding_json(first),
            "findings": [_finding_json(f) for f in sorted(self.findings, key=lambda f: f.seq)],
            "unchecked": None if self.unchecked is None else list(self.unchecked),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "witness": None if self.witness is None else witness_json(self.witness),
        }


def witness_json(w: Witness) -> dict[str, object]:
    return {
        "site": w.site,
        "seq": w.seq,
        "hash": w.hash.hex(),
        "at": canonical_time(w.at),
        "witness": w.witness,
        "witnessed_at": canonical_time(w.witnessed_at),
        "conflict": w.conflict or None,
        "conflict_seq": w.conflict_seq or None,
        "conflict_hash": w.conflict_hash.hex() or None,
        "conflict_at": None if w.conflict_at is None else canonical_time(w.conflict_at),
    }


def _finding_json(f: Finding) -> dict[str, object]:
    return {"seq": f.seq, "kind": f.kind, "what": f.what}


def _intact(entry: AuditEntry, seq: int | None = None) -> bool:
    try:
        return hash_of(entry, seq=seq) == entry.hash
    except AuditFormatError:
        return False


def classify(entry: AuditEntry, neighbours: Sequence[AuditEntry]) -> Finding:
    """Why ``entry`` (in its place, with a stored hash its fields do not give) is wrong,
    judged from the entries stored around it."""
    candidates = range(max(1, entry.seq - SEARCH_WINDOW), entry.seq + SEARCH_WINDOW + 1)
    origin = next((s for s in candidates if s != entry.seq and _intact(entry, s)), None)
    if origin is None:
        return Finding(entry.seq, "changed", f"entry {entry.seq} was changed (hash mismatch)")
    stored = {n.hash for n in neighbours if n.seq != entry.seq}
    if origin > entry.seq and entry.prev not in stored:
        n = origin - entry.seq
        return Finding(
            entry.seq,
            "removed",
            f"{n} entr{'y' if n == 1 else 'ies'} removed at {entry.seq} and the later ones "
            f"renumbered (entry {entry.seq} was entry {origin})",
        )
    return Finding(
        entry.seq, "reordered", f"entry {entry.seq} holds entry {origin}, moved out of its place"
    )


class ChainWalker:
    """The chain check, fed entries in seq order (a page at a time); stops at the first
    problem, whose entry it keeps in :attr:`suspect` for :func:`classify`."""

    def __init__(
        self,
        checkpoints: Mapping[int, AuditCheckpoint],
        report: Report,
        witnessed: Witness | None = None,
    ) -> None:
        self.witnessed = witnessed
        self.expected = 1
        self.prev = ZERO_HASH
        self.checkpoints = checkpoints
        self.report = report
        self.suspect: AuditEntry | None = None
        self.stopped = False
        self.good_checkpoint = 0  # the last checkpoint the chain matched
        self.recorded: list[tuple[int, int]] = []  # (entry seq, checkpoint seq it records)

    def feed(self, entries: Iterable[AuditEntry]) -> None:
        for e in entries:
            if self.stopped:
                return
            self._one(e)

    def _stop(self, finding: Finding) -> None:
        self.report.findings.append(finding)
        self.stopped = True

    def _one(self, e: AuditEntry) -> None:
        r = self.report
        if e.seq != self.expected:
            missing = (
                f"{self.expected}"
                if e.seq == self.expected + 1
                else (f"{self.expected}..{e.seq - 1}")
            )
            self._stop(Finding(self.expected, "removed", f"entry {missing} missing"))
            return
        if not _intact(e):
            self.suspect = e
            self.stopped = True
            return
        if e.prev != self.prev:
            if e.seq == 1:
                what = "entry 1 does not start the chain (prev is not zero)"
            else:
                what = f"entry {e.seq - 1} was rewritten: entry {e.seq} does not link to it"
            self._stop(Finding(max(1, e.seq - 1), "changed", what))
            return
        cp = self.checkpoints.get(e.seq)
        if cp is not None:
            if cp.hash != e.hash:
                since = self.good_checkpoint + 1
                self._stop(
                    Finding(
                        since,
                        "changed",
                        f"entries {since}..{e.seq} were rewritten: entry {e.seq} no longer has "
                        "the hash its signed checkpoint names",
                    )
                )
                return
            self.good_checkpoint = e.seq
        w = self.witnessed
        if w is not None and w.seq == e.seq and w.hash != e.hash:
            self._stop(
                Finding(
                    e.seq,
                    "forked",
                    f"the chain forks from what {w.witness} witnessed: entry {e.seq} has hash "
                    f"{e.hash.hex()[:16]}…, {w.witness} saw {w.hash.hex()[:16]}… at "
                    f"{canonical_time(w.witnessed_at)}",
                )
            )
            return
        if e.action == CHECKPOINT_ACTION:
            with contextlib.suppress(ValueError):
                self.recorded.append((e.seq, int(e.subject)))
        r.entries += 1
        r.last_seq = e.seq
        self.prev = e.hash
        self.expected = e.seq + 1


def check_checkpoints(
    checkpoints: Iterable[AuditCheckpoint],
    *,
    site: str,
    keys: Mapping[str, VerifyKey],
    token_check: TokenCheck | None,
    report: Report,
    history: KeyHistory | None = None,
) -> dict[int, AuditCheckpoint]:
    """Check each checkpoint's signature, its token and that its key was usable at the
    token's time (module rules); return the good ones by seq."""
    good: dict[int, AuditCheckpoint] = {}
    untimed = 0
    for cp in checkpoints:
        report.checkpoints += 1
        try:
            message = checkpoint_message(site, cp.seq, cp.hash, cp.at)
        except AuditFormatError as exc:
            report.findings.append(Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: {exc}"))
            continue
        key = keys.get(cp.signer)
        if key is None:
            report.findings.append(
                Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: unknown signer {cp.signer}")
            )
            continue
        try:
            verify(key, cp.signature, message)
        except CryptoError:
            report.findings.append(
                Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: signature does not verify")
            )
            continue
        stamped: datetime | None = None
        if cp.token is None:
            untimed += 1
        elif token_check is not None:
            try:
                stamped = token_check(cp.token, hashlib.sha256(message).digest())
            except NotWitnessToken as exc:
                report.warnings.append(f"checkpoint {cp.seq}: {exc}: judged as untimed")
            except Exception as exc:  # the checker's own error type; all mean "bad token"
                report.findings.append(
                    Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: bad time-stamp: {exc}")
                )
                continue
        refusal = None if history is None else history.refusal(cp.signer, stamped)
        if refusal is not None:
            report.findings.append(Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: {refusal}"))
            continue
        good[cp.seq] = cp
        report.checkpoints_verified += 1
    if untimed:
        report.warnings.append(
            f"{untimed} checkpoint(s) carry no time-stamp token: their signing time is only "
            "the signer's claim"
        )
    return good


def finish(walker: ChainWalker, good: Mapping[int, AuditCheckpoint]) -> None:
    """The checks that need the whole walk: cut-off tails and deleted checkpoints."""
    r = walker.report
    r.last_checkpoint = walker.good_checkpoint
    if walker.stopped:
        return
    w = walker.witnessed
    if w is not None and w.seq > r.last_seq:
        r.findings.append(
            Finding(
                r.last_seq + 1,
                "removed",
                f"entries {r.last_seq + 1}..{w.seq} removed: {w.witness} witnessed the chain "
                f"at seq {w.seq} (hash {w.hash.hex()[:16]}…) at {canonical_time(w.witnessed_at)}",
            )
        )
    beyond = [s for s in good if s > r.last_seq]
    if beyond:
        r.findings.append(
            Finding(
                r.last_seq + 1,
                "removed",
                f"entries {r.last_seq + 1}..{max(beyond)} removed (checkpoint {max(beyond)} "
                "covers them)",
            )
        )
    for entry_seq, cp_seq in walker.recorded:
        if cp_seq not in good:
            r.findings.append(
                Finding(
                    cp_seq,
                    "checkpoint",
                    f"checkpoint {cp_seq} is missing or invalid (entry {entry_seq} records it)",
                )
            )
    if not good:
        r.notes.append("no checkpoint yet")


def verify_entries(
    entries: Sequence[AuditEntry],
    checkpoints: Sequence[AuditCheckpoint] = (),
    *,
    site: str = "",
    keys: Mapping[str, VerifyKey] | None = None,
    token_check: TokenCheck | None = None,
    history: KeyHistory | None = None,
    witnessed: Witness | None = None,
) -> Report:
    """Verify a whole log held in memory (the store version pages: gateway/proof/audit.py)."""
    report = Report(witness=witnessed)
    good = check_checkpoints(
        checkpoints,
        site=site,
        keys=keys or {},
        token_check=token_check,
        report=report,
        history=history,
    )
    walker = ChainWalker(good, report, witnessed)
    walker.feed(sorted(entries, key=lambda e: e.seq))
    if walker.suspect is not None:
        s = walker.suspect.seq
        near = [e for e in entries if abs(e.seq - s) <= SEARCH_WINDOW]
        report.findings.append(classify(walker.suspect, near))
    finish(walker, good)
    return report
