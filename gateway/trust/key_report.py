"""What key operations leave for the operator: rows for ``valise keys list`` (the
site's ring, HQ's infrastructure keys) and the audit log entry of each operation."""

from __future__ import annotations

from pathlib import Path

from config.site import SiteConfig
from crypto.x509 import certificate_not_after, certificate_pin
from gateway.proof import audit
from gateway.site.context import open_store, read_trust
from gateway.site.keyring import KeyRing
from gateway.store.base import Store
from gateway.trust.outcome import Outcome

_COLUMNS = (
    "kind",
    "id",
    "state",
    "created",
    "activated",
    "retire_after",
    "retired",
    "revoked",
    "reason",
    "expires",
    "announced_in",
    "activate_by",
    "overlap_seconds",
)


async def audit_key_event(
    config: SiteConfig,
    action: str,
    subject: str,
    out: Outcome,
    result: str,
    *,
    actor: str,
    store: Store | None = None,
) -> None:
    """Record a key operation in the audit log (opening the site's store when none is
    given). Raises AuditError or StoreError: the caller reports it; the key change is
    done and published either way."""
    detail = {"steps": "; ".join(out.steps)}
    if out.serial is not None:
        detail["directory"] = str(out.serial)
    own = store is None
    used = await open_store(config) if store is None else store
    try:
        await audit.record(
            used, actor=actor, action=action, subject=subject, result=result, detail=detail
        )
    finally:
        if own:
            await used.close()


def describe(ring: KeyRing) -> list[dict[str, str]]:
    """The ring as rows for ``valise keys list``."""
    return [{c: str(getattr(k, c)) for c in _COLUMNS} for k in ring.keys]


def key_rows(ring: KeyRing, config: SiteConfig) -> list[dict[str, str]]:
    """Every key of the site as ``valise keys list --json`` prints it: the ring's, and
    at HQ its infrastructure keys. Raises KeyStoreError."""
    return describe(ring) + (hub_keys(config.directory) if config.is_hub else [])


def hub_keys(site_dir: Path) -> list[dict[str, str]]:
    """HQ's own infrastructure keys: the directory key, the site CA, the TSA."""
    k = site_dir / "keys"
    blank = dict.fromkeys(_COLUMNS, "")
    rows = [{**blank, "kind": "directory", "id": read_trust(k).key_id, "state": "active"}]
    for kind, name in (("ca", "ca.crt"), ("tsa", "tsa.crt")):
        path = k / name
        if path.exists():
            cert = path.read_bytes()
            expires = certificate_not_after(cert).isoformat()
            rows.append(
                {
                    **blank,
                    "kind": kind,
                    "id": certificate_pin(cert),
                    "state": "active",
                    "expires": expires,
                }
            )
    return rows
