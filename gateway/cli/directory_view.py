"""``valise directory show``: the directory in force as JSON and as text.

The summary carries what the signed directory holds, nothing more: its serial,
issue time and hub, the id of the directory key that signed it (the one this site
trusts: a directory signed by any other is refused on reading), and per site its
id, whether it is active, its endpoint, its role (``hub`` for HQ; missions have
none) and every key listed for it with its kind, id (a TLS key: its pin) and state,
the ids of its retired or revoked keys no longer listed, and the organs it serves
(id and name, the first being the one it speaks as). The directory keeps no
per-key dates (routing/key_changes.py); each site's key ring has them
(``valise keys list``).
"""

from __future__ import annotations

from typing import Any

from envelope.values import format_time
from gateway.cli.table import printable
from routing.directory import Directory, SiteEntry


def _keys(entry: SiteEntry) -> list[dict[str, str]]:
    return [
        *({"kind": "signing", "id": k.key_id, "state": s.value} for k, s in entry.signing),
        *({"kind": "encryption", "id": k.key_id, "state": s.value} for k, s in entry.encryption),
        *({"kind": "tls", "id": pin, "state": s.value} for pin, s in entry.tls),
    ]


def directory_summary(d: Directory, *, signed_by: str) -> dict[str, Any]:
    """The JSON form of ``valise directory show``."""
    return {
        "serial": d.serial,
        "issued": format_time(d.issued),
        "hub": d.hub,
        "signed_by": signed_by,
        "sites": [
            {
                "id": e.site,
                "active": e.active,
                "endpoint": e.endpoint,
                "role": "hub" if e.site == d.hub else None,
                "keys": _keys(e),
                "retired_ids": list(e.retired_ids),
                "organs": [{"id": o.organ_id, "name": o.name} for o in e.organs],
            }
            for e in d.sites
        ],
    }


def directory_lines(summary: dict[str, Any]) -> list[str]:
    """The text form: a heading line, then each site and its keys, indented."""
    lines = [
        f"serial {summary['serial']}  issued {summary['issued']}  hub {summary['hub']}  "
        f"signed by {summary['signed_by']}"
    ]
    for site in summary["sites"]:
        lines.append(
            f"  {site['id']:<12}{'active' if site['active'] else 'disabled':<10}{site['endpoint']}"
        )
        lines += [f"    {k['kind']:<12}{k['state']:<10}{k['id']}" for k in site["keys"]]
        if site["retired_ids"]:
            lines.append(f"    {'retired ids':<22}{' '.join(site['retired_ids'])}")
        lines += [
            printable(f"    {'organ':<22}{o['id']}" + (f"  {o['name']}" if o["name"] else ""))
            for o in site.get("organs", [])
        ]
    return lines
