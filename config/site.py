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

Each section is a frozen dataclass of config/sections.py (its defaults and limits);
this module loads them, checks the whole, and renders it back.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.sections import (
    DELIVERY_MODES,
    MAX_EXPIRES_DAYS,
    MAX_TSA_BATCH,
    MAX_WARN_DEFERRED_SECONDS,
    MIN_EXPIRES_DAYS,
    AuditSection,
    ConfigError,
    DeliverySection,
    HttpSection,
    KeysSection,
    OpsSection,
    RelaySection,
    SiteSection,
    SmtpSection,
    StoreSection,
    TsaSection,
    check_keys,
)
from config.sections import enabled as enabled
from config.sections import split_hostport as split_hostport

CONFIG_NAME = "valise.toml"
_SITE_ID = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]{0,17})){1,31}")


@dataclass(frozen=True)
class SiteConfig:
    directory: Path
    site: SiteSection
    store: StoreSection
    ops: OpsSection
    relay: RelaySection
    # The sections' defaults: frozen dataclasses (config/sections.py), shared safely.
    http: HttpSection = HttpSection()  # noqa: RUF009
    smtp: SmtpSection = SmtpSection()  # noqa: RUF009
    delivery: DeliverySection = DeliverySection()  # noqa: RUF009
    keys: KeysSection = KeysSection()  # noqa: RUF009
    tsa: TsaSection = TsaSection()  # noqa: RUF009
    audit: AuditSection = AuditSection()  # noqa: RUF009
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
        values[key] = _value(f.type, value, name, key)
    try:
        return cls(**values)
    except TypeError:
        missing = [
            k for k, f in known.items() if k not in values and f.default is f.default_factory
        ]
        raise ConfigError(f"[{name}] is missing {', '.join(missing) or 'settings'}") from None


def _value(kind: Any, value: Any, name: str, key: str) -> Any:
    """One setting as its field's type (annotations are strings here: ``from __future__
    import annotations``). A number is refused as a boolean (TOML ``true`` is not 1), a
    fraction for an integer, and NaN or infinity; a TOML boolean is taken as yes or no
    only by a yes/no setting (YES_NO). Raises ConfigError naming the key."""
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"[{name}] {key} must be an integer, not {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"[{name}] {key} must be an integer, not {value!r}") from None
    if kind == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"[{name}] {key} must be a number, not {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"[{name}] {key} must be a finite number, not {value!r}")
        return number
    if isinstance(value, bool) and (name, key) in YES_NO:
        return "yes" if value else "no"
    if not isinstance(value, str):
        raise ConfigError(f"[{name}] {key} must be a string, not {value!r}")
    return value


# The yes/no settings: "yes"/"no" (or true/false, on/off, 1/0), or a TOML boolean.
YES_NO = (
    ("http", "enabled"),
    ("smtp", "enabled"),
    ("smtp", "require_tls"),
    ("smtp", "require_auth"),
    ("delivery", "smarthost_starttls"),
)
# Settings that must be above zero (a count, a size, a period); each section's own
# bounds follow in _check and check_keys.
POSITIVE = (
    ("relay", "directory_poll_seconds"),
    ("relay", "retry_base_seconds"),
    ("relay", "retry_max_seconds"),
    ("relay", "lease_seconds"),
    ("relay", "request_timeout_seconds"),
    ("http", "max_body_bytes"),
    ("http", "webhook_timeout_seconds"),
    ("smtp", "max_message_bytes"),
    ("smtp", "max_recipients"),
    ("smtp", "timeout_seconds"),
)


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
    for section, key in YES_NO:
        try:
            enabled(getattr(getattr(c, section), key))
        except ConfigError as exc:
            raise ConfigError(f"[{section}] {key}: {exc}") from None
    for section, key in POSITIVE:
        if not getattr(getattr(c, section), key) > 0:
            raise ConfigError(f"[{section}] {key} must be above 0")
    if c.relay.retry_max_seconds < c.relay.retry_base_seconds:
        raise ConfigError("[relay] retry_max_seconds must be at least retry_base_seconds")
    for key in ("endpoint", "hub_endpoint"):
        _check_endpoint(getattr(c.site, key), f"[site] {key}")
    c.delivery.smarthost_address  # noqa: B018 - parsed (and checked) once, at load
    if c.delivery.mode not in DELIVERY_MODES:
        raise ConfigError("[delivery] mode must be inbox, maildir or smtp")
    if "smtp" in c.delivery.modes.values() and not c.delivery.smarthost:
        raise ConfigError("[delivery] smarthost is required for a mailbox with mode smtp")
    if c.delivery.mode == "smtp" and not c.delivery.smarthost:
        raise ConfigError("[delivery] smarthost is required for mode = smtp")
    check_keys(c.keys)
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


def _check_endpoint(value: str, what: str) -> None:
    """An endpoint other sites reach: an https:// URL with a host (and maybe a port)."""
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ConfigError(f"{what} must be an https:// URL, not {value!r}") from None
    if url.scheme != "https" or not url.hostname:
        raise ConfigError(f"{what} must be an https:// URL like https://hq.example:8443")
    if url.query or url.fragment or url.username or url.password:
        raise ConfigError(f"{what} must be an https:// URL with no query, fragment or user")


def render_site_config(config: SiteConfig) -> str:
    """The TOML text for ``config`` (used by init and join)."""

    def section(name: str, obj: Any) -> str:
        lines = [f"[{name}]"]
        for f in fields(obj):
            v = getattr(obj, f.name)
            lines.append(f"{f.name} = {v!r}" if not isinstance(v, str) else f'{f.name} = "{v}"')
        return "\n".join(lines)

    return "\n\n".join(section(n, getattr(config, n)) for n in SECTIONS) + "\n"


__all__ = [
    "CONFIG_NAME",
    "ConfigError",
    "SiteConfig",
    "enabled",
    "load_site_config",
    "read_key_passphrase",
    "render_site_config",
    "split_hostport",
]
