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
- The store's rows include the work still to do (gateway/service/doctor_queue.py): deferred
  or forwarded-without-receipt too long, failed lately, received and not delivered.
- The doctor creates nothing: a SQLite store that does not exist yet is reported,
  not created (an existing store is opened as every site command opens it). Reaching
  HQ is the one GET a mission makes anyway (``/v1/directory``, over the mutual-TLS
  channel, with the gateway's client context and pinned connector).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout

from config.site import SiteConfig, enabled, load_site_config
from crypto.errors import CryptoError
from crypto.keyfile import is_encrypted
from crypto.x509 import SiteCA, certificate_not_after
from envelope.errors import EnvelopeError
from envelope.values import format_time
from gateway.proof.audit import untimed_tail
from gateway.proof.tsa_service import TSA_KEY
from gateway.relay import kept_journal
from gateway.service.doctor_checks import (
    Check,
    Status,
    _span,
    audit_tokens_check,
    ca_issuing_check,
    clock_skew_check,
    directory_check,
    disk_check,
    expiry_check,
    hq_reachable_check,
    key_mode_check,
    refused_journal_check,
    site_mode_check,
    smtp_auth_check,
    store_durability_checks,
)
from gateway.service.doctor_kept_keys import kept_keys_check
from gateway.service.doctor_queue import queue_checks
from gateway.site.connector import PinnedConnector
from gateway.site.context import TlsMaterial, load_directory, open_store, read_trust
from gateway.site.keyring import RING, load_ring
from gateway.site.keystore import (
    KeyPassphraseError,
    KeyStoreError,
    _read_private,
    load_public_doc,
    open_private,
)
from gateway.site.modes import private_paths
from gateway.site.tls import client_context
from gateway.trust.directory_age import directory_age, stale_reason
from routing.directory import USABLE, Directory, DirectoryError, parse_directory

HQ_TIMEOUT_S = 10.0
STORE_TIMEOUT_S = 15.0


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
    (gateway/service/workers.py: the same client context and pinned connector). Raises
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


async def store_checks(
    config: SiteConfig, directory: Directory | None = None, now: datetime | None = None
) -> list[Check]:
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
        queue = await asyncio.wait_for(
            queue_checks(store, config, directory, now or datetime.now(UTC)), STORE_TIMEOUT_S
        )
        kept = await asyncio.wait_for(kept_keys_check(store, config), STORE_TIMEOUT_S)
    except Exception as exc:
        return [Check("store reachable", Status.FAIL, f"{where}: {_describe(exc)}")]
    finally:
        await store.close()
    return [
        Check("store reachable", Status.OK, where),
        *store_durability_checks(durability),
        audit_tokens_check(*untimed),
        *queue,
        kept,
    ]


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
    checks += await store_checks(config, local, now)
    checks.append(smtp_auth_check(enabled(config.smtp.require_auth), enabled(config.smtp.enabled)))
    usage = shutil.disk_usage(config.directory)
    checks.append(disk_check(config.directory, usage.free, usage.total))
    refused = refused_journal_check(config.directory / f"{kept_journal.NAME}.refused")
    if refused is not None:
        checks.append(refused)
    return checks
