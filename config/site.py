"""A site's configuration: ``DIR/valise.toml`` plus ``VALISE_*`` overrides, parsed once.

    [site]
    id = "M-PARIS"
    role = "mission"                    # or "hub"
    listen = "127.0.0.1:8444"           # the channel (mutual TLS)
    endpoint = "https://127.0.0.1:8444" # how others reach it (in the directory)
    hub = "HQ"
    hub_endpoint = "https://127.0.0.1:8443"

    [store]
    backend = "sqlite"                  # or "postgres"
    path = "store.sqlite"               # relative to DIR
    dsn = ""                            # for postgres
    schema = ""                         # for postgres: this site's schema (default public)

    [ops]
    listen = "127.0.0.1:9444"           # /livez /readyz /metrics, loopback

    [http]                              # the integrators' HTTP API
    listen = "127.0.0.1:0"
    [smtp]                              # the SMTP bridge
    listen = "127.0.0.1:0"
    domain = "valise.local"             # RCPT TO:<mailbox@site-id.valise.local>
    [delivery]                          # documents received here: inbox | maildir | smtp
    mode = "inbox"

    [relay]
    directory_poll_seconds = 30
    batch_envelopes = 64
    max_request_bytes = 67108864
    retry_base_seconds = 1.0
    retry_max_seconds = 300.0
    warn_deferred_seconds = 3600        # doctor warns past this (deferred, receipt deferred)

    [tsa]                               # RFC 3161 time-stamps (gateway/proof/timestamping.py)
    policy = "1.3.6.1.4.1.57264.1.1"    # HQ: the TSA policy OID its tokens carry
    checkpoint_policy = "1.3.6.1.4.1.57264.1.2"  # every site: the witness's checkpoint tokens
    batch_max = 64                      # requests per batch (at most 256)
    batch_wait_ms = 20                  # how long a batch waits to fill

    [keys]                              # key lifecycle (gateway/trust/lifecycle.py)
    overlap_seconds = 604800            # a replaced key stays retiring this long
    announce_seconds = 3600             # a rotated key waits as next at most this long
    check_seconds = 60                  # how often a running site looks at its keys

Environment overrides use the upper-case dotted path: ``VALISE_STORE_DSN``,
``VALISE_SITE_LISTEN``, ``VALISE_OPS_LISTEN``, ``VALISE_RELAY_BATCH_ENVELOPES``...
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

CONFIG_NAME = "valise.toml"
_SITE_ID = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
_HOSTPORT = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})")


class ConfigError(Exception):
    """The configuration is missing, malformed or inconsistent. One line, names the key."""


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
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]{0,17})){1,31}")


def _check_keys(k: KeysSection) -> None:
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


@dataclass(frozen=True)
class SiteConfig:
    directory: Path
    site: SiteSection
    store: StoreSection
    ops: OpsSection
    relay: RelaySection
    http: HttpSection = HttpSection()
    smtp: SmtpSection = SmtpSection()
    delivery: DeliverySection = DeliverySection()
    keys: KeysSection = KeysSection()
    tsa: TsaSection = TsaSection()
    audit: AuditSection = AuditSection()
    # The private keys' passphrase (read_key_passphrase), None when they are not
    # encrypted. Not a setting of valise.toml: render_site_config never writes it.
    key_passphrase: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def is_hub(self) -> bool:
        return self.site.role == "hub"

    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"

    @property
    def store_path(self) -> Path:
        return self.directory / self.store.path


def split_hostport(value: str, what: str) -> tuple[str, int]:
    m = _HOSTPORT.fullmatch(value)
    if m is None or not 0 <= int(m["port"]) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT, not {value!r}")
    return m["host"].strip("[]"), int(m["port"])


def _section(cls: type[Any], raw: Mapping[str, Any], name: str, env: Mapping[str, str]) -> Any:
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown setting [{name}] {key}")
    for key, f in known.items():
        env_value = env.get(f"VALISE_{name}_{key}".upper())
        value = env_value if env_value is not None else raw.get(key)
        if value is None:
            continue
        # Annotations are strings here (from __future__ import annotations).
        if f.type == "int":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"[{name}] {key} must be an integer") from None
        elif f.type == "float":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"[{name}] {key} must be a number") from None
        elif not isinstance(value, str):
            raise ConfigError(f"[{name}] {key} must be a string")
        values[key] = value
    try:
        return cls(**values)
    except TypeError:
        missing = [
            k for k, f in known.items() if k not in values and f.default is f.default_factory
        ]
        raise ConfigError(f"[{name}] is missing {', '.join(missing) or 'settings'}") from None


def load_site_config(directory: Path, environ: Mapping[str, str] | None = None) -> SiteConfig:
    """Read ``directory/valise.toml`` with VALISE_* overrides. Raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    path = directory / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: is {directory} a site folder? (valise init / join)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for name in raw:
        if name not in SECTIONS:
            raise ConfigError(f"unknown section [{name}] in {path}")
    config = SiteConfig(
        directory=directory,
        **{name: _section(cls, raw.get(name, {}), name, env) for name, cls in SECTIONS.items()},
    )
    passphrase = read_key_passphrase(directory, config.keys.passphrase_file, env)
    return _check(replace(config, key_passphrase=passphrase))


KEY_PASSPHRASE_ENV = "VALISE_KEY_PASSPHRASE"  # noqa: S105 (a variable name)
MAX_PASSPHRASE_BYTES = 1024


def read_key_passphrase(
    directory: Path, passphrase_file: str = "", environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The passphrase of a site's private keys: ``VALISE_KEY_PASSPHRASE`` if set, else
    the content of ``passphrase_file`` (relative to ``directory``; one trailing line end
    dropped), else None (the keys are not encrypted). Raises :class:`ConfigError` for an
    empty passphrase, or a file that is missing, too large or readable by others."""
    env = os.environ if environ is None else environ
    given = env.get(KEY_PASSPHRASE_ENV)
    if given is not None:
        if not given:
            raise ConfigError(f"{KEY_PASSPHRASE_ENV} is set but empty")
        return given.encode()
    if not passphrase_file:
        return None
    path = directory / passphrase_file
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(MAX_PASSPHRASE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"[keys] passphrase_file {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ConfigError(
            f"[keys] passphrase_file {path} is mode {mode & 0o777:04o}, readable by others: "
            f"chmod 600 {path}"
        )
    if len(data) > MAX_PASSPHRASE_BYTES:
        raise ConfigError(f"[keys] passphrase_file {path} is over {MAX_PASSPHRASE_BYTES} bytes")
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise ConfigError(f"[keys] passphrase_file {path} is empty")
    return data


SECTIONS: dict[str, type[Any]] = {
    "site": SiteSection,
    "store": StoreSection,
    "ops": OpsSection,
    "relay": RelaySection,
    "http": HttpSection,
    "smtp": SmtpSection,
    "delivery": DeliverySection,
    "keys": KeysSection,
    "tsa": TsaSection,
    "audit": AuditSection,
}


def enabled(value: str) -> bool:
    """A yes/no setting. Raises :class:`ConfigError` for anything else."""
    if value.lower() in ("yes", "true", "on", "1"):
        return True
    if value.lower() in ("no", "false", "off", "0"):
        return False
    raise ConfigError(f"expected yes or no, not {value!r}")


def _check(c: SiteConfig) -> SiteConfig:
    if _SITE_ID.fullmatch(c.site.id) is None or _SITE_ID.fullmatch(c.site.hub) is None:
        raise ConfigError("[site] id and hub must be site ids like HQ or M-PARIS")
    if c.site.role not in ("hub", "mission"):
        raise ConfigError("[site] role must be hub or mission")
    if (c.site.role == "hub") != (c.site.id == c.site.hub):
        raise ConfigError("[site] the hub is the site whose role is hub")
    split_hostport(c.site.listen, "[site] listen")
    split_hostport(c.ops.listen, "[ops] listen")
    if c.store.backend not in ("sqlite", "postgres"):
        raise ConfigError("[store] backend must be sqlite or postgres")
    if c.store.backend == "postgres" and not c.store.dsn:
        raise ConfigError("[store] dsn is required for the postgres backend")
    if c.relay.batch_envelopes < 1 or c.relay.max_request_bytes < 1024:
        raise ConfigError("[relay] batch_envelopes and max_request_bytes must be positive")
    if c.relay.directory_max_age_seconds <= 0:
        raise ConfigError("[relay] directory_max_age_seconds must be positive")
    if not 0 < c.relay.warn_deferred_seconds <= MAX_WARN_DEFERRED_SECONDS:
        raise ConfigError(
            f"[relay] warn_deferred_seconds must be above 0 and at most {MAX_WARN_DEFERRED_SECONDS}"
        )
    if not MIN_EXPIRES_DAYS <= c.relay.max_expires_days <= MAX_EXPIRES_DAYS:
        raise ConfigError(
            f"[relay] max_expires_days must be {MIN_EXPIRES_DAYS} to {MAX_EXPIRES_DAYS}"
            " (at least the default lifetime of a document)"
        )
    for value in (
        c.http.enabled,
        c.smtp.enabled,
        c.smtp.require_tls,
        c.smtp.require_auth,
        c.delivery.smarthost_starttls,
    ):
        enabled(value)
    split_hostport(c.http.listen, "[http] listen")
    if c.http.header_timeout_seconds <= 0 or c.http.max_connections < 1:
        raise ConfigError("[http] header_timeout_seconds and max_connections must be positive")
    if c.http.max_unauthenticated_connections < 0:
        raise ConfigError("[http] max_unauthenticated_connections must be 0 (half) or more")
    split_hostport(c.smtp.listen, "[smtp] listen")
    if c.smtp.max_sessions < 1 or c.smtp.preauth_timeout_seconds <= 0:
        raise ConfigError("[smtp] max_sessions and preauth_timeout_seconds must be positive")
    if c.smtp.max_preauth_sessions < 0:
        raise ConfigError("[smtp] max_preauth_sessions must be 0 (half) or more")
    if c.delivery.mode not in DELIVERY_MODES:
        raise ConfigError("[delivery] mode must be inbox, maildir or smtp")
    if "smtp" in c.delivery.modes.values() and not c.delivery.smarthost:
        raise ConfigError("[delivery] smarthost is required for a mailbox with mode smtp")
    if c.delivery.mode == "smtp" and not c.delivery.smarthost:
        raise ConfigError("[delivery] smarthost is required for mode = smtp")
    _check_keys(c.keys)
    if _OID.fullmatch(c.tsa.policy) is None:
        raise ConfigError(
            f"[tsa] policy must be a dotted OID like 1.3.6.1.4.1.N.1, not {c.tsa.policy!r}"
        )
    if _OID.fullmatch(c.tsa.checkpoint_policy) is None:
        raise ConfigError(
            "[tsa] checkpoint_policy must be a dotted OID like 1.3.6.1.4.1.N.2,"
            f" not {c.tsa.checkpoint_policy!r}"
        )
    if c.tsa.checkpoint_policy == c.tsa.policy:
        raise ConfigError(
            "[tsa] checkpoint_policy must differ from policy: /v1/timestamp stamps any"
            " digest under policy, and such a token must not pass for the witness's"
        )
    if not 1 <= c.tsa.batch_max <= MAX_TSA_BATCH or not 0 <= c.tsa.batch_wait_ms <= 60_000:
        raise ConfigError(
            f"[tsa] batch_max must be 1 to {MAX_TSA_BATCH} and batch_wait_ms 0 to 60000"
        )
    if c.audit.checkpoint_every < 1 or c.audit.checkpoint_seconds <= 0:
        raise ConfigError("[audit] checkpoint_every and checkpoint_seconds must be positive")
    return c


def render_site_config(config: SiteConfig) -> str:
    """The TOML text for ``config`` (used by init and join)."""

    def section(name: str, obj: Any) -> str:
        lines = [f"[{name}]"]
        for f in fields(obj):
            v = getattr(obj, f.name)
            lines.append(f"{f.name} = {v!r}" if not isinstance(v, str) else f'{f.name} = "{v}"')
        return "\n".join(lines)

    return "\n\n".join(section(n, getattr(config, n)) for n in SECTIONS) + "\n"


__all__ = ["ConfigError", "SiteConfig", "load_site_config", "render_site_config", "replace"]
