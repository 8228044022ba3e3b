"""The checks of ``valise doctor``, as pure functions: each takes plain values (a file
mode, an expiry time, an HTTP ``Date`` header, the store's durability settings, disk
figures) and returns a :class:`Check`. ``gateway/service/doctor.py`` gathers the values from a
site folder and from HQ and calls them.

Rules:
- ``fail`` means the site cannot run or will lose data or trust soon enough to act
  now; ``warn`` means an operator should look; every threshold is a named constant.
- A check does no I/O: it can be tested with values alone.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path

from crypto.x509 import SITE_DAYS
from envelope.values import format_time
from gateway.site.keystore import PRIVATE_MODE
from gateway.site.modes import Private

# Expiry: warn at each of these many days ahead (the smallest one passed is named).
EXPIRY_WARN_DAYS = (30, 14, 7)
# Clock skew against HQ's Date header, in seconds (strictly above: warn / fail).
CLOCK_SKEW_WARN_S = 5.0
CLOCK_SKEW_FAIL_S = 60.0
# A mission's directory older than this is stale (the same rule as /readyz).
DIRECTORY_MAX_AGE = timedelta(days=1)
# Free space in DIR: warn under either figure, fail under either figure.
DISK_WARN_FRACTION = 0.10
DISK_WARN_BYTES = 1024**3
DISK_FAIL_FRACTION = 0.01
DISK_FAIL_BYTES = 100 * 1024**2
# How long to wait for HQ and for the store before reporting them unreachable.

SQLITE_SYNCHRONOUS_OK = ("FULL", "EXTRA")
# Every level but "off" waits for the commit record to reach the local disk.
PG_SYNCHRONOUS_COMMIT_OK = ("on", "remote_apply", "remote_write", "local")
# Failed deliveries are reported for this long after they failed.
FAILED_WINDOW = timedelta(days=1)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Waiting:
    """One piece of work still to do, as the queue checks see it: a delivery (``who``
    its next hop) or a document received here (``who`` its origin), waiting ``since``
    for ``reason``."""

    message_id: str
    who: str
    since: datetime
    reason: str


def _span(delta: timedelta) -> str:
    """A duration for people: '10 days', '5 h', '12 min', '30 s'."""
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{round(seconds / 86400)} days"
    if seconds >= 2 * 3600:
        return f"{round(seconds / 3600)} h"
    if seconds >= 120:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"


# -- the checks --------------------------------------------------------------------


def key_mode_check(path: Path, mode: int | None) -> Check:
    """A private key file's mode (``None``: the file is missing)."""
    name = f"key mode {path.name}"
    if mode is None:
        return Check(name, Status.FAIL, f"{path} is missing")
    bits = stat.S_IMODE(mode)
    if bits & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(
            name,
            Status.FAIL,
            f"{path} is mode {bits:04o}, readable by others: the gateway refuses it; "
            f"chmod 600 {path}",
        )
    if bits != PRIVATE_MODE:
        # Owner-only but not rw: the gateway accepts it, rotation may not write it.
        return Check(name, Status.WARN, f"{path} is mode {bits:04o}, expected 0600")
    return Check(name, Status.OK, "mode 0600")


def site_mode_check(found: Private) -> Check:
    """The site folder, its store, inbox or Maildir: ``serve`` refuses any bit for others."""
    name = f"mode {found.what}"
    if found.loose:
        return Check(name, Status.FAIL, f"{found.reason}; valise serve refuses it")
    return Check(name, Status.OK, f"mode {stat.S_IMODE(found.mode):04o}")


def expiry_check(
    name: str,
    what: str,
    not_after: datetime,
    now: datetime,
    *,
    not_before: datetime | None = None,
    verb: str = "expires",
) -> Check:
    """Expired: fail; within one of EXPIRY_WARN_DAYS: warn, naming the threshold."""
    left = not_after - now
    if left <= timedelta(0):
        return Check(
            name, Status.FAIL, f"{what} expired {format_time(not_after)} ({_span(left)} ago)"
        )
    if not_before is not None and now < not_before:
        return Check(
            name,
            Status.FAIL,
            f"{what} is not valid before {format_time(not_before)} (in {_span(not_before - now)})",
        )
    detail = f"{what} {verb} {format_time(not_after)} (in {_span(left)})"
    passed = [d for d in EXPIRY_WARN_DAYS if left <= timedelta(days=d)]
    if passed:
        return Check(name, Status.WARN, f"{detail}: within the {min(passed)}-day threshold")
    return Check(name, Status.OK, detail)


def ca_issuing_check(ca_not_after: datetime, now: datetime) -> Check:
    """HQ's CA key issues SITE_DAYS-day certificates that may not outlive the CA, so
    enrollment stops working SITE_DAYS before the CA certificate expires."""
    last = ca_not_after - timedelta(days=SITE_DAYS)
    check = expiry_check(
        "expiry ca key",
        "ca.key",
        last,
        now,
        verb=f"can issue {SITE_DAYS}-day site certificates until",
    )
    if check.status is Status.FAIL:
        return Check(
            check.name,
            Status.FAIL,
            f"ca.key can no longer issue {SITE_DAYS}-day site certificates (the CA "
            f"certificate ends {format_time(ca_not_after)}): enrollment fails; renew the CA",
        )
    return check


def clock_skew_check(local: datetime, date_header: str | None) -> Check:
    """``local``: our clock when HQ answered (the request's midpoint); ``date_header``:
    HQ's HTTP Date. The Date has one-second resolution, so HQ's time is taken as the
    middle of that second."""
    name = "clock skew"
    if not date_header:
        return Check(name, Status.WARN, "HQ's answer carried no Date header")
    try:
        hq = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return Check(name, Status.WARN, f"HQ's Date header {date_header!r} is not an HTTP date")
    if hq.tzinfo is None:
        hq = hq.replace(tzinfo=UTC)
    skew = (local - (hq + timedelta(seconds=0.5))).total_seconds()
    detail = f"local clock {abs(skew):.1f} s {'ahead of' if skew >= 0 else 'behind'} HQ"
    if abs(skew) > CLOCK_SKEW_FAIL_S:
        return Check(name, Status.FAIL, f"{detail} (over {CLOCK_SKEW_FAIL_S:.0f} s): fix NTP")
    if abs(skew) > CLOCK_SKEW_WARN_S:
        return Check(name, Status.WARN, f"{detail} (over {CLOCK_SKEW_WARN_S:.0f} s)")
    return Check(name, Status.OK, detail)


def hq_reachable_check(endpoint: str, error: str | None, seconds: float = 0.0) -> Check:
    """HQ unreachable is a warning: a mission keeps working on its queue and directory."""
    if error is not None:
        return Check(
            "hq reachable", Status.WARN, f"{endpoint}: {error}; clock and directory not compared"
        )
    return Check("hq reachable", Status.OK, f"{endpoint} answered in {seconds * 1000:.0f} ms")


def directory_check(
    serial: int, issued: datetime, now: datetime, *, at_hub: bool, hq_serial: int | None
) -> Check:
    """The directory in force. At a mission: stale after DIRECTORY_MAX_AGE, behind when
    HQ has a newer serial, and HQ holding an older one means HQ lost versions."""
    name = "directory"
    age = now - issued
    when = f"{_span(age)} ago" if age >= timedelta(0) else f"{_span(age)} in the future"
    detail = f"serial {serial}, issued {format_time(issued)} ({when})"
    if at_hub:
        return Check(name, Status.OK, f"{detail}; published here")
    warnings = []
    if age > DIRECTORY_MAX_AGE:
        warnings.append(f"older than {_span(DIRECTORY_MAX_AGE)}")
    if hq_serial is None:
        note = "HQ not compared"
    elif hq_serial > serial:
        warnings.append(f"HQ has serial {hq_serial}: is the gateway running and fetching it?")
        note = ""
    elif hq_serial < serial:
        return Check(
            name, Status.FAIL, f"{detail}; HQ holds an older serial {hq_serial} (restored?)"
        )
    else:
        note = "same as HQ"
    if warnings:
        extra = f" ({note})" if note else ""
        return Check(name, Status.WARN, f"{detail}; {'; '.join(warnings)}{extra}")
    return Check(name, Status.OK, f"{detail}; {note}")


def store_durability_checks(d: dict[str, str]) -> list[Check]:
    """The settings a store's sessions run with (``Store.durability()``)."""
    if d.get("backend") == "sqlite":
        sync = d.get("synchronous", "?").upper()
        journal = d.get("journal_mode", "?").lower()
        return [
            Check(
                "store synchronous",
                Status.OK if sync in SQLITE_SYNCHRONOUS_OK else Status.FAIL,
                f"synchronous = {sync}"
                + ("" if sync in SQLITE_SYNCHRONOUS_OK else ": commits may be lost; need FULL"),
            ),
            Check(
                "store journal_mode",
                Status.OK if journal == "wal" else Status.WARN,
                f"journal_mode = {journal}" + ("" if journal == "wal" else ", expected wal"),
            ),
        ]
    commit = d.get("synchronous_commit", "?").lower()
    fsync = d.get("fsync", "?").lower()
    pages = d.get("full_page_writes", "on").lower()
    return [
        Check(
            "store synchronous_commit",
            Status.OK if commit in PG_SYNCHRONOUS_COMMIT_OK else Status.FAIL,
            f"synchronous_commit = {commit}"
            + ("" if commit in PG_SYNCHRONOUS_COMMIT_OK else ": acknowledged commits may be lost"),
        ),
        Check(
            "store fsync",
            Status.OK if fsync == "on" else Status.FAIL,
            f"fsync = {fsync}" + ("" if fsync == "on" else ": a crash may corrupt the database"),
        ),
        Check(
            "store full_page_writes",
            Status.OK if pages == "on" else Status.WARN,
            f"full_page_writes = {pages}" + ("" if pages == "on" else ": torn pages on crash"),
        ),
    ]


def smtp_auth_check(require_auth: bool, bridge_on: bool) -> Check:
    """An SMTP bridge without AUTH takes mail from any process that reaches it: warn."""
    if not bridge_on:
        return Check("smtp auth", Status.OK, "the SMTP bridge is off")
    if require_auth:
        return Check("smtp auth", Status.OK, "AUTH (integrator tokens, after STARTTLS) required")
    return Check(
        "smtp auth",
        Status.WARN,
        "[smtp] require_auth = no: anyone who reaches the bridge submits as anyone",
    )


def disk_check(path: Path, free: int, total: int) -> Check:
    share = free / total if total else 0.0
    detail = f"{free / 1024**3:.1f} GiB free of {total / 1024**3:.1f} GiB ({share:.0%}) at {path}"
    if share < DISK_FAIL_FRACTION or free < DISK_FAIL_BYTES:
        return Check("disk", Status.FAIL, f"{detail}: under 1% or 100 MiB")
    if share < DISK_WARN_FRACTION or free < DISK_WARN_BYTES:
        return Check("disk", Status.WARN, f"{detail}: under 10% or 1 GiB")
    return Check("disk", Status.OK, detail)


def refused_journal_check(refused: Path) -> Check | None:
    """A journal of the kept-receipts re-check that a start refused and set aside
    (gateway/relay/kept_journal.py): the delivered/completed events it listed may never
    have been sent. None when there is none."""
    if not refused.exists() and not refused.is_symlink():
        return None
    return Check(
        "kept receipts journal",
        Status.WARN,
        f"{refused} was refused at a start and set aside (the log says why): the "
        "delivered/completed events it listed may not have been sent; check the webhooks, "
        "then remove it",
    )


# -- gathering ---------------------------------------------------------------------


def audit_tokens_check(count: int, first: int) -> Check:
    """The audit checkpoints after the last time-stamped one (gateway/proof/audit.py
    untimed_tail): their signing time is only the site's claim, so a thief with the
    signing key could rewrite what they cover (docs/AUDIT.md)."""
    if count:
        return Check(
            "audit tokens",
            Status.FAIL,
            f"{count} checkpoint(s) from seq {first} on carry no time-stamp token: "
            "is HQ's time-stamp authority reachable?",
        )
    return Check("audit tokens", Status.OK, "the latest checkpoint is time-stamped")


# -- the queue ---------------------------------------------------------------------


def _oldest(items: list[Waiting]) -> Waiting:
    return min(items, key=lambda w: (w.since, w.message_id))


def _why(reason: str) -> str:
    return f": {reason}" if reason else ""


def _messages(items: list[Waiting]) -> str:
    n = len({w.message_id for w in items})
    return f"{n} message{'' if n == 1 else 's'}"


def deferred_check(deferred: list[Waiting], now: datetime, threshold: timedelta) -> Check:
    """Deliveries deferred now, ``since`` this site accepted their message: any waiting
    longer than ``threshold`` (``[relay] warn_deferred_seconds``) is a warning, naming
    how many, the oldest, its next hop and the reason it was last deferred for."""
    name = "queue deferred"
    late = [w for w in deferred if now - w.since > threshold]
    if not late:
        return Check(
            name,
            Status.OK,
            f"{_messages(deferred)} deferred, none longer than {_span(threshold)}",
        )
    w = _oldest(late)
    return Check(
        name,
        Status.WARN,
        f"{_messages(late)} deferred longer than {_span(threshold)}; oldest {w.message_id} to "
        f"{w.who}, waiting {_span(now - w.since)}{_why(w.reason)} "
        "(valise queue list --state deferred)",
    )


def held_check(held: list[Waiting], now: datetime, threshold: timedelta) -> Check:
    """Deliveries held (by the operator, for a revoked destination key, or waiting for a
    destination's encryption key), ``since`` this site accepted their message: any held
    longer than ``threshold`` (``[relay] warn_deferred_seconds``) is a warning naming
    the oldest and why it is held (a key that never comes holds it until it expires)."""
    name = "queue held"
    late = [w for w in held if now - w.since > threshold]
    if not late:
        return Check(
            name, Status.OK, f"{_messages(held)} held, none longer than {_span(threshold)}"
        )
    w = _oldest(late)
    return Check(
        name,
        Status.WARN,
        f"{_messages(late)} held longer than {_span(threshold)}; oldest {w.message_id} to "
        f"{w.who}, held {_span(now - w.since)}{_why(w.reason)} "
        "(valise queue list --state held)",
    )


def failed_check(failed: list[Waiting], now: datetime) -> Check:
    """Deliveries that failed (``since``: when) within FAILED_WINDOW: a warning naming
    how many, the latest, and the command that lists them."""
    name = "queue failed"
    recent = [w for w in failed if now - w.since <= FAILED_WINDOW]
    if not recent:
        return Check(name, Status.OK, f"none failed in the last {_span(FAILED_WINDOW)}")
    w = max(recent, key=lambda x: (x.since, x.message_id))
    return Check(
        name,
        Status.WARN,
        f"{_messages(recent)} failed in the last {_span(FAILED_WINDOW)}; latest {w.message_id} "
        f"to {w.who}{_why(w.reason)} (valise queue list --state failed)",
    )


def receipts_awaited_check(forwarded: list[Waiting], now: datetime, threshold: timedelta) -> Check:
    """Messages sent from here, forwarded (``since``: when) and still without a receipt:
    longer than ``threshold`` is a warning (is the destination up, can it seal one?).
    A circular's entries are its destinations still awaiting theirs (``who``: "SITE via
    HOP"), counted as destinations too."""
    name = "receipts awaited"
    late = [w for w in forwarded if now - w.since > threshold]
    if not late:
        return Check(
            name,
            Status.OK,
            f"{_messages(forwarded)} forwarded awaiting a receipt, none longer than "
            f"{_span(threshold)}",
        )
    w = _oldest(late)
    n = len(late)
    dests = (
        f" ({n} destination{'' if n == 1 else 's'})" if any(" via " in w.who for w in late) else ""
    )
    return Check(
        name,
        Status.WARN,
        f"{_messages(late)}{dests} forwarded with no receipt for longer than "
        f"{_span(threshold)}; oldest "
        f"{w.message_id} to {w.who}, forwarded {_span(now - w.since)} ago "
        f"(valise status {w.message_id})",
    )


def received_check(received: list[Waiting], now: datetime, threshold: timedelta) -> Check:
    """Documents received here and not delivered yet (``since``: received), with why
    (gateway/relay/waiting.py: a receipt deferred for want of the origin's key, a deferred
    hand-off, not opened): longer than ``threshold`` is a warning naming how many, the
    oldest, its origin and the reason."""
    name = "inbox waiting"
    late = [w for w in received if now - w.since > threshold]
    if not late:
        return Check(
            name,
            Status.OK,
            f"{len(received)} document(s) received not delivered yet, none longer than "
            f"{_span(threshold)}",
        )
    w = _oldest(late)
    return Check(
        name,
        Status.WARN,
        f"{len(late)} document(s) received here not delivered for longer than {_span(threshold)}; "
        f"oldest {w.message_id} from {w.who}, {_span(now - w.since)}{_why(w.reason)} "
        "(valise inbox list)",
    )
