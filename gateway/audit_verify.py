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
- Only the first problem in the chain is reported (everything after it is suspect);
  checkpoint signature problems are all listed. Entries after the last checkpoint are
  ``unchecked``: intact as far as the chain shows, but not yet signed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from crypto.recipes import verify
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    ZERO_HASH,
    AuditCheckpoint,
    AuditEntry,
    AuditFormatError,
    checkpoint_message,
    hash_of,
)

# How far from its place a moved entry is looked for (a problem is classified only).
SEARCH_WINDOW = 64

TokenCheck = Callable[[bytes, bytes], None]  # (token, sha256 of signed bytes); raises


@dataclass(frozen=True)
class Finding:
    """One problem: the first seq it concerns, its kind and what was seen."""

    seq: int
    kind: str  # changed | removed | reordered | checkpoint
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

    def __init__(self, checkpoints: Mapping[int, AuditCheckpoint], report: Report) -> None:
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
) -> dict[int, AuditCheckpoint]:
    """Check each checkpoint's signature (and token); return the good ones by seq."""
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
        if cp.token is None:
            untimed += 1
        elif token_check is not None:
            try:
                token_check(cp.token, hashlib.sha256(message).digest())
            except Exception as exc:  # the checker's own error type; all mean "bad token"
                report.findings.append(
                    Finding(cp.seq, "checkpoint", f"checkpoint {cp.seq}: bad time-stamp: {exc}")
                )
                continue
        good[cp.seq] = cp
        report.checkpoints_verified += 1
    if untimed:
        report.notes.append(f"{untimed} checkpoint(s) carry no time-stamp token")
    return good


def finish(walker: ChainWalker, good: Mapping[int, AuditCheckpoint]) -> None:
    """The checks that need the whole walk: cut-off tails and deleted checkpoints."""
    r = walker.report
    r.last_checkpoint = walker.good_checkpoint
    if walker.stopped:
        return
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
) -> Report:
    """Verify a whole log held in memory (the store version pages: gateway/audit.py)."""
    report = Report()
    good = check_checkpoints(
        checkpoints, site=site, keys=keys or {}, token_check=token_check, report=report
    )
    walker = ChainWalker(good, report)
    walker.feed(sorted(entries, key=lambda e: e.seq))
    if walker.suspect is not None:
        s = walker.suspect.seq
        near = [e for e in entries if abs(e.seq - s) <= SEARCH_WINDOW]
        report.findings.append(classify(walker.suspect, near))
    finish(walker, good)
    return report
