"""The sections of a site's configuration (config/site.py loads them): one frozen
dataclass per ``[section]`` of valise.toml with its defaults, the limits its values
must keep, and the checks that concern one section alone (:func:`parse_mailboxes`,
:func:`check_keys`). Pure: no I/O.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class ConfigError(Exception):
    """The configuration is missing, malformed or inconsistent. One line, names the key."""


_HOSTPORT = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})")


def split_hostport(value: str, what: str) -> tuple[str, int]:
    m = _HOSTPORT.fullmatch(value)
    if m is None or not 0 <= int(m["port"]) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT, not {value!r}")
    return m["host"].strip("[]"), int(m["port"])


def enabled(value: str) -> bool:
    """A yes/no setting. Raises :class:`ConfigError` for anything else."""
    if value.lower() in ("yes", "true", "on", "1"):
        return True
    if value.lower() in ("no", "false", "off", "0"):
        return False
    raise ConfigError(f"expected yes or no, not {value!r}")


@dataclass(frozen=True)
class SiteSection:
    id: str
    role: str
    listen: str
    endpoint: str
    hub: str
    hub_endpoint: str


@dataclass(frozen=True)
class StoreSection:
    backend: str = "sqlite"
    path: str = "store.sqlite"
    dsn: str = ""
    schema: str = ""  # postgres: the schema holding this site's tables (default: public)


@dataclass(frozen=True)
class OpsSection:
    listen: str = "127.0.0.1:0"


@dataclass(frozen=True)
class RelaySection:
    directory_poll_seconds: float = 30.0
    batch_envelopes: int = 64
    max_request_bytes: int = 64 * 1024 * 1024
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    lease_seconds: float = 60.0
    request_timeout_seconds: float = 30.0
    # A mission whose directory has not been fetched from HQ for longer is not ready,
    # fails doctor and warns on every CLI command; it still sends (directory_age.py).
    directory_max_age_seconds: float = 7 * 86400.0
    # The furthest ahead a document sealed here may expire (HTTP, SMTP, valise send):
    # stores keep an envelope and its dedupe row until then (gateway/relay/submit.py).
    max_expires_days: int = 90
    # valise doctor warns about a delivery deferred, a message forwarded without its
    # receipt, or a document received here and not delivered (a receipt deferred for
    # want of the origin's key), for longer than this (gateway/service/doctor_queue.py).
    warn_deferred_seconds: float = 3600.0
    # Fault injection for the durability tests: the process SIGKILLs itself the
    # first time it reaches this point (see gateway/runtime/faults.py). Empty in production.
    crash_at: str = ""


@dataclass(frozen=True)
class HttpSection:
    """The integrators' HTTP API (gateway/bridges/http/api.py), loopback by default."""

    enabled: str = "yes"
    listen: str = "127.0.0.1:0"
    max_body_bytes: int = 64 * 1024 * 1024
    webhook_timeout_seconds: float = 10.0
    # A request head not complete this long after the connection opened (or after the
    # previous answer on it) closes the connection: a trickled header never ends.
    header_timeout_seconds: float = 30.0
    # Connections open at once; one more is answered 503 and closed only when every
    # open one has a valid token.
    max_connections: int = 200
    # Of those, connections that have not yet presented a valid token (0: half of
    # max_connections). One more closes the likeliest attacker's pending connection to
    # make room, so a tokenless flood cannot keep a token holder out.
    max_unauthenticated_connections: int = 0


@dataclass(frozen=True)
class SmtpSection:
    """The SMTP bridge (gateway/bridges/smtp/bridge.py), loopback by default."""

    enabled: str = "yes"
    listen: str = "127.0.0.1:0"
    domain: str = "valise.local"  # RCPT TO:<mailbox@site-id.domain>
    max_message_bytes: int = 32 * 1024 * 1024
    max_recipients: int = 50
    timeout_seconds: float = 300.0
    # Sessions open at once (one more is told 421 4.7.0), and how long a session may
    # stay unauthenticated however busy it keeps itself: a flood of idle connections
    # cannot hold the process's file descriptors.
    max_sessions: int = 100
    preauth_timeout_seconds: float = 30.0
    # Of those, sessions not yet authenticated (0: half of max_sessions). One more
    # ends the likeliest attacker's pre-auth session to make room (421 4.7.0), so a
    # flood of idle connections cannot keep an integrator from reaching AUTH.
    max_preauth_sessions: int = 0
    require_tls: str = "no"
    # AUTH (integrator tokens, after STARTTLS) before MAIL; "no" lets any local
    # process submit as anyone, and `valise doctor` warns about it.
    require_auth: str = "yes"


@dataclass(frozen=True)
class DeliverySection:
    """Where documents received here go: left in the HTTP inbox, a Maildir, or SMTP."""

    mode: str = "inbox"  # inbox | maildir | smtp
    maildir: str = "maildir"  # relative to DIR
    smarthost: str = ""  # HOST:PORT for mode = smtp
    smarthost_starttls: str = "yes"
    mailboxes: str = ""  # per-mailbox overrides: "alice=maildir, registry=smtp"

    @functools.cached_property
    def modes(self) -> Mapping[str, str]:
        """``mailboxes`` parsed: lower-case mailbox -> mode (parsed once, at load, by
        the config's check; raises ConfigError)."""
        return MappingProxyType(parse_mailboxes(self.mailboxes))

    def mode_for(self, mailbox: str | None) -> str:
        """The delivery mode of ``mailbox`` (its override, else ``mode``)."""
        return self.modes.get((mailbox or "").lower(), self.mode)

    @functools.cached_property
    def smarthost_address(self) -> tuple[str, int] | None:
        """``smarthost`` as (host, port), None when unset (checked at load)."""
        return split_hostport(self.smarthost, "[delivery] smarthost") if self.smarthost else None

    @functools.cached_property
    def starttls(self) -> bool:
        """``smarthost_starttls`` (checked at load)."""
        return enabled(self.smarthost_starttls)


DELIVERY_MODES = ("inbox", "maildir", "smtp")


def parse_mailboxes(text: str) -> dict[str, str]:
    """``"alice=maildir, registry=smtp"`` as {mailbox: mode}. Raises ConfigError."""
    overrides: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, mode = item.partition("=")
        if not sep or not name.strip() or mode.strip() not in DELIVERY_MODES:
            raise ConfigError(f"[delivery] mailboxes: {item!r} is not MAILBOX=inbox|maildir|smtp")
        overrides[name.strip().lower()] = mode.strip()
    return overrides


@dataclass(frozen=True)
class KeysSection:
    """Key lifecycle (gateway/trust/lifecycle.py): overlap windows and TLS renewal."""

    overlap_seconds: float = 7 * 86400.0  # how long a replaced key stays retiring
    tls_days: int = 365  # validity of a TLS certificate HQ issues on rotation
    tls_renew_days: int = 30  # renew the TLS certificate this long before it expires
    check_seconds: float = 60.0  # how often a running site looks at its keys
    # ``keys rotate`` publishes the new key as next and a running site makes it active
    # once every active site has fetched a directory announcing it (HQ's record) or,
    # at the latest, this long after it was announced (0: at once, like --now).
    announce_seconds: float = 3600.0
    # A file (0600; relative to DIR) holding the passphrase that encrypts this site's
    # private keys at rest. VALISE_KEY_PASSPHRASE, when set, is used instead. Never
    # a command-line argument: the process list and shell history would show it.
    passphrase_file: str = ""


# The TSA policy OID HQ stamps under unless configured. A PLACEHOLDER under a private
# enterprise arc: the ministry replaces it with an OID of its own arc, which its
# time-stamping policy document defines.
DEFAULT_TSA_POLICY = "1.3.6.1.4.1.57264.1.1"
# The policy OID of the tokens HQ's audit witness issues over the checkpoints it has
# witnessed (gateway/proof/witness.py), and the only one ``audit verify`` takes to time
# a checkpoint: /v1/timestamp stamps any digest under ``policy``, so its tokens must
# not pass for the witness's. Every site must name the same one (a PLACEHOLDER too).
DEFAULT_CHECKPOINT_POLICY = "1.3.6.1.4.1.57264.1.2"
# The most time-stamp requests one batch may carry (HQ's /v1/timestamp refuses more:
# gateway/proof/timestamp_batch.py MAX_BATCH_REQUESTS).
MAX_TSA_BATCH = 256
# Bounds of [relay] max_expires_days: at least envelope.seal.DEFAULT_TTL (30 days,
# the lifetime of a document that names none), at most ten years.
MIN_EXPIRES_DAYS = 30
MAX_EXPIRES_DAYS = 3650
# [relay] warn_deferred_seconds: at most the longest lifetime an envelope may have.
MAX_WARN_DEFERRED_SECONDS = MAX_EXPIRES_DAYS * 86400
# The longest [keys] announce_seconds: a new key waits at most this long as next.
MAX_ANNOUNCE_SECONDS = 30 * 86400.0
# The longest [keys] overlap_seconds (gateway/site/keyring.py MAX_OVERLAP_SECONDS: ten years).
MAX_OVERLAP_SECONDS = 3650 * 86400.0


def check_keys(k: KeysSection) -> None:
    """[keys]: finite, in range, and a TLS renewal that starts early enough for its
    announcement to end before the old certificate does (review 10, F6): a renewed TLS
    key waits as next up to announce_seconds, so a mission that never fetches could
    otherwise keep a site presenting an expired certificate."""
    for name in ("overlap_seconds", "check_seconds", "announce_seconds"):
        if not math.isfinite(getattr(k, name)):
            raise ConfigError(f"[keys] {name} must be a finite number of seconds")
    if not 0 <= k.overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise ConfigError(f"[keys] overlap_seconds must be 0 to {MAX_OVERLAP_SECONDS:.0f}")
    if k.check_seconds <= 0:
        raise ConfigError("[keys] check_seconds must be positive")
    if not 0 <= k.announce_seconds <= MAX_ANNOUNCE_SECONDS:
        raise ConfigError(
            f"[keys] announce_seconds must be 0 to {MAX_ANNOUNCE_SECONDS:.0f} (30 days)"
        )
    if k.tls_days < 2:
        raise ConfigError("[keys] tls_days must be at least 2")
    if not 1 <= k.tls_renew_days < k.tls_days:
        raise ConfigError(
            f"[keys] tls_renew_days must be 1 to {k.tls_days - 1} (less than tls_days,"
            f" {k.tls_days}), not {k.tls_renew_days}"
        )
    if k.tls_renew_days * 86400 <= k.announce_seconds:
        raise ConfigError(
            f"[keys] tls_renew_days ({k.tls_renew_days} days) must be longer than"
            f" announce_seconds ({k.announce_seconds:.0f} s): a renewed TLS key may wait"
            " that long as next, and the old certificate must not end before it is used"
        )


@dataclass(frozen=True)
class TsaSection:
    """RFC 3161 time-stamping (gateway/proof/timestamping.py): HQ's policy, and batching."""

    policy: str = DEFAULT_TSA_POLICY  # HQ: the policy OID of the tokens it issues
    # Every site: the policy OID of the witness's checkpoint tokens (see its default).
    checkpoint_policy: str = DEFAULT_CHECKPOINT_POLICY
    batch_max: int = 64  # time-stamp requests gathered into one batch
    batch_wait_ms: int = 20  # how long new work waits for more before a batch goes


@dataclass(frozen=True)
class AuditSection:
    """The audit log (gateway/proof/audit.py): how often a running site signs a checkpoint."""

    checkpoint_every: int = 1000  # entries not yet covered that call for a checkpoint
    checkpoint_seconds: float = 300.0  # or this long after the last one, if any are new
