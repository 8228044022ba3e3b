"""``valise doctor``: check a site folder the way an operator would before trusting it.

Each check is a small function that takes plain values (a file mode, an expiry time,
an HTTP ``Date`` header, the store's durability settings, disk figures) and returns a
:class:`Check`; :func:`run_checks` gathers those values from a site folder and from
HQ, and calls them.

Rules:
- The doctor diagnoses what ``load_site`` would refuse, so it loads a site piece by
  piece and turns every failure into a row; only a folder without a readable
  configuration stops it (:class:`config.site.ConfigError`).
- ``fail`` means the site cannot run or will lose data or trust soon enough to act
  now; ``warn`` means an operator should look; every threshold is a named constant.
- The doctor creates nothing: a SQLite store that does not exist yet is reported,
  not created (an existing store is opened as every site command opens it). Reaching
  HQ is the one GET a mission makes anyway (``/v1/directory``, over the mutual-TLS
  channel, with the gateway's client context and pinned connector).
"""

from __future__ import annotations

import asyncio
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout

from config.site import SiteConfig, enabled, load_site_config
from crypto.errors import CryptoError
from crypto.keyfile import is_encrypted
from crypto.x509 import SITE_DAYS, SiteCA, certificate_not_after
from envelope.errors import EnvelopeError
from envelope.values import format_time
from gateway.audit import untimed_tail
from gateway.channel import PinnedConnector
from gateway.directory_age import directory_age, stale_reason
from gateway.keyring import RING, load_ring
from gateway.keystore import (
    PRIVATE_MODE,
    KeyPassphraseError,
    KeyStoreError,
    _read_private,
    load_public_doc,
    open_private,
)
from gateway.site import TlsMaterial, load_directory, open_store, read_trust
from gateway.site_modes import Private, private_paths
from gateway.timestamping import TSA_KEY
from gateway.tls import client_context
from routing.directory import USABLE, Directory, DirectoryError, parse_directory

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
HQ_TIMEOUT_S = 10.0
STORE_TIMEOUT_S = 15.0

SQLITE_SYNCHRONOUS_OK = ("FULL", "EXTRA")
# Every level but "off" waits for the commit record to reach the local disk.
PG_SYNCHRONOUS_COMMIT_OK = ("on", "remote_apply", "remote_write", "local")


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def worst(checks: list[Check]) -> Status:
    statuses = {c.status for c in checks}
    for status in (Status.FAIL, Status.WARN):
        if status in statuses:
            return status
    return Status.OK


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


def key_encryption_check(files: list[Path], passphrase: bytes | None) -> Check:
    """Whether the private keys are encrypted at rest, and open with the passphrase
    given (VALISE_KEY_PASSPHRASE or [keys] passphrase_file)."""
    name = "key encryption"
    encrypted: list[Path] = []
    plain: list[Path] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a missing or unreadable file has its own mode row
        (encrypted if is_encrypted(data) else plain).append(path)
        if passphrase is not None and is_encrypted(data):
            try:
                open_private(path, data, passphrase)
            except KeyPassphraseError as exc:
                return Check(name, Status.FAIL, f"{exc}: the gateway cannot start")
            except KeyStoreError as exc:
                return Check(name, Status.FAIL, str(exc))
    if encrypted and passphrase is None:
        return Check(
            name,
            Status.FAIL,
            f"{len(encrypted)} key file(s) are encrypted and no passphrase is set "
            "(VALISE_KEY_PASSPHRASE or [keys] passphrase_file): the gateway cannot start",
        )
    if passphrase is not None and plain:
        return Check(
            name,
            Status.WARN,
            f"{len(plain)} key file(s) are not encrypted, e.g. {plain[0].name}: "
            "valise keys encrypt",
        )
    if passphrase is None:
        return Check(name, Status.OK, "not encrypted (file modes only)")
    return Check(name, Status.OK, f"{len(encrypted)} key file(s) encrypted; passphrase opens them")


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


def directory_fetch_check(config: SiteConfig, now: datetime) -> Check:
    """A mission's last fetch of the directory from HQ by its gateway (the doctor's own
    GET does not count): older than ``[relay] directory_max_age_seconds`` fails."""
    stale = stale_reason(config, now)
    if stale is not None:
        return Check("directory fetch", Status.FAIL, stale)
    age = directory_age(config, now) or 0.0
    return Check(
        "directory fetch", Status.OK, f"fetched from HQ {_span(timedelta(seconds=age))} ago"
    )


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


# -- gathering ---------------------------------------------------------------------


def private_key_files(config: SiteConfig) -> list[Path]:
    """The private key files a site needs, and any other *.key file beside them.

    With a key ring (keys/ring.json) the envelope and TLS keys are those of the ring:
    the file of every usable (next, active, retiring) key, and every other *.key in
    keys/ring/ (a retired or revoked key not pruned yet). Without one, the legacy
    SITE.signing.key, SITE.encryption.key and tls.key. HQ adds ca.key, directory.key
    and tsa.key (when present: a hub made before time-stamping creates it at start)."""
    k = config.keys_dir
    site = config.site.id
    ring_files: list[Path] = []
    if (k / RING).exists():
        names: list[str] = []
        try:
            ring = load_ring(k, config.key_passphrase)
        except KeyStoreError:
            pass  # reported by the expiry rows; still check the modes of what is there
        else:
            ring_files = [ring.path(key) for key in ring.keys if key.key_state in USABLE]
        ring_dir = k / "ring"
        found = sorted(ring_dir.glob("*.key")) if ring_dir.is_dir() else []
        ring_files += [p for p in found if p not in ring_files]
    else:
        names = [f"{site}.signing.key", f"{site}.encryption.key", "tls.key"]
    if config.is_hub:
        names += ["ca.key", "directory.key"]
        if (k / TSA_KEY).exists():
            names.append(TSA_KEY)
    extra = sorted(p.name for p in k.glob("*.key") if p.name not in names) if k.is_dir() else []
    return [*(k / n for n in [*names, *extra]), *ring_files]


def _tls_files(k: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """(certificate, key) paths of the site's TLS key in force: the ring's active TLS
    key when keys/ring.json exists, else keys/tls.crt and keys/tls.key. Raises
    KeyStoreError for a damaged ring."""
    if not (k / RING).exists():
        return k / "tls.crt", k / "tls.key"
    ring = load_ring(k, passphrase)
    active = ring.active("tls")
    return ring.path(active, ".crt"), ring.path(active, ".key")


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return None


def expiry_checks(config: SiteConfig, now: datetime) -> list[Check]:
    k = config.keys_dir
    site = config.site.id
    checks: list[Check] = []
    try:
        doc = load_public_doc(k / f"{site}.pub.xml")
        checks.append(
            expiry_check(
                "expiry key document",
                f"{site}.pub.xml",
                doc.valid_until,
                now,
                not_before=doc.valid_from,
            )
        )
    except (KeyStoreError, EnvelopeError) as exc:
        checks.append(Check("expiry key document", Status.FAIL, str(exc)))
    ca_not_after: datetime | None = None
    try:
        tls_cert: Path | None = _tls_files(k)[0]
    except KeyStoreError as exc:
        tls_cert = None
        checks.append(Check("expiry tls certificate", Status.FAIL, str(exc)))
    files = [("expiry ca certificate", k / "ca.crt")]
    if tls_cert is not None:
        files.insert(0, ("expiry tls certificate", tls_cert))
    for name, path in files:
        try:
            not_after = certificate_not_after(path.read_bytes())
        except (OSError, CryptoError) as exc:
            checks.append(Check(name, Status.FAIL, f"{path}: {exc}"))
            continue
        checks.append(expiry_check(name, path.name, not_after, now))
        if path == k / "ca.crt":
            ca_not_after = not_after
    if config.is_hub:
        # Read even when too readable: the mode has its own row, this one is about time.
        try:
            key = open_private(k / "ca.key", (k / "ca.key").read_bytes(), config.key_passphrase)
            ca = SiteCA.from_pem((k / "ca.crt").read_bytes(), key)
            checks.append(ca_issuing_check(ca.not_after, now))
        except (OSError, CryptoError, KeyStoreError) as exc:
            end = f" (CA certificate ends {format_time(ca_not_after)})" if ca_not_after else ""
            checks.append(Check("expiry ca key", Status.FAIL, f"ca.key: {exc}{end}"))
    return checks


@dataclass(frozen=True)
class HubAnswer:
    local: datetime  # our clock half-way through the request
    seconds: float  # how long the request took
    date: str | None  # HQ's Date header
    directory: bytes


async def fetch_from_hub(
    config: SiteConfig, tls: TlsMaterial, local: Directory | None, timeout: float
) -> HubAnswer:
    """GET HQ's /v1/directory over the channel, as the gateway's directory loop does
    (gateway/delivery.py: the same client context and pinned connector). Raises
    any exception of the connection; the caller reports it."""
    site = config.site
    hub_endpoint = site.hub_endpoint.rstrip("/")

    def expect(origin: str) -> tuple[str, tuple[str, ...]] | None:
        for entry in local.sites if local is not None else ():
            if entry.endpoint.rstrip("/") == origin:
                return entry.site, entry.tls_pins
        if origin == hub_endpoint:
            return site.hub, ()  # the directory's content is signed
        return None

    ssl_ctx = client_context(tls.cert_pem, tls.key_pem, tls.ca_pem)
    async with ClientSession(connector=PinnedConnector(expect=expect, ssl=ssl_ctx)) as session:
        start = time.time()
        async with session.get(
            f"{hub_endpoint}/v1/directory", timeout=ClientTimeout(total=timeout)
        ) as resp:
            end = time.time()
            if resp.status != 200:
                raise RuntimeError(f"HQ answered {resp.status}: {(await resp.text())[:200]}")
            date = resp.headers.get("Date")
            body = await resp.read()
    middle = datetime.fromtimestamp((start + end) / 2, UTC)
    return HubAnswer(middle, end - start, date, body)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


async def store_checks(config: SiteConfig) -> list[Check]:
    if config.store.backend == "sqlite":
        where = f"sqlite {config.store_path}"
        if not config.store_path.exists():
            return [
                Check(
                    "store reachable",
                    Status.WARN,
                    f"{config.store_path} does not exist yet (valise serve creates it)",
                )
            ]
    else:
        where = f"postgresql, schema {config.store.schema or '(search_path)'}"
    try:
        store = await asyncio.wait_for(open_store(config), STORE_TIMEOUT_S)
    except Exception as exc:
        return [Check("store reachable", Status.FAIL, f"{where}: {_describe(exc)}")]
    try:
        await asyncio.wait_for(store.ping(), STORE_TIMEOUT_S)
        durability = await asyncio.wait_for(store.durability(), STORE_TIMEOUT_S)
        untimed = await asyncio.wait_for(untimed_tail(store), STORE_TIMEOUT_S)
    except Exception as exc:
        return [Check("store reachable", Status.FAIL, f"{where}: {_describe(exc)}")]
    finally:
        await store.close()
    return [
        Check("store reachable", Status.OK, where),
        *store_durability_checks(durability),
        audit_tokens_check(*untimed),
    ]


def audit_tokens_check(count: int, first: int) -> Check:
    """The audit checkpoints after the last time-stamped one (gateway/audit.py
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


async def run_checks(directory: Path, *, now: datetime | None = None) -> list[Check]:
    """Every check for the site in ``directory``, in table order.

    Raises :class:`ConfigError` when ``directory`` holds no readable configuration
    (and OSError if the folder itself cannot be examined)."""
    config = load_site_config(directory)
    now = now or datetime.now(UTC)
    k = config.keys_dir
    key_files = private_key_files(config)
    checks = [key_mode_check(p, _mode(p)) for p in key_files]
    checks.append(key_encryption_check(key_files, config.key_passphrase))
    checks += [site_mode_check(p) for p in private_paths(config)]
    checks += expiry_checks(config, now)

    local: Directory | None = None
    try:
        local = load_directory(config, read_trust(k))
    except (OSError, ValueError, DirectoryError, EnvelopeError, CryptoError) as exc:
        checks.append(Check("directory", Status.FAIL, f"{_describe(exc)}"))

    hq_serial: int | None = None
    if not config.is_hub:
        endpoint = config.site.hub_endpoint
        answer: HubAnswer | None = None
        try:
            cert_path, key_path = _tls_files(k, config.key_passphrase)
            tls = TlsMaterial(
                cert_path.read_bytes(),
                _read_private(key_path, config.key_passphrase),
                (k / "ca.crt").read_bytes(),
            )
        except (OSError, KeyStoreError) as exc:
            checks.append(hq_reachable_check(endpoint, f"no TLS material: {_describe(exc)}"))
        else:
            try:
                answer = await fetch_from_hub(config, tls, local, HQ_TIMEOUT_S)
            except Exception as exc:
                checks.append(hq_reachable_check(endpoint, _describe(exc)))
        if answer is not None:
            checks.append(hq_reachable_check(endpoint, None, answer.seconds))
            checks.append(clock_skew_check(answer.local, answer.date))
            try:
                hq_serial = parse_directory(answer.directory, read_trust(k)).serial
            except (OSError, ValueError, DirectoryError, EnvelopeError, CryptoError) as exc:
                checks.append(
                    Check("directory at HQ", Status.FAIL, f"HQ's directory: {_describe(exc)}")
                )
    if local is not None:
        checks.append(
            directory_check(
                local.serial, local.issued, now, at_hub=config.is_hub, hq_serial=hq_serial
            )
        )

    if not config.is_hub:
        checks.append(directory_fetch_check(config, now))
    checks += await store_checks(config)
    checks.append(smtp_auth_check(enabled(config.smtp.require_auth), enabled(config.smtp.enabled)))
    usage = shutil.disk_usage(config.directory)
    checks.append(disk_check(config.directory, usage.free, usage.total))
    return checks
