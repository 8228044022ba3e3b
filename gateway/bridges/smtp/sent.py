"""What the SMTP bridge remembers about each message it queued: DIR/smtp-sent/ID.json.

A DSN must go back to the SMTP sender when a message finally fails, but the sender
is sealed inside the envelope, which the origin cannot read back. So the bridge
writes one small JSON file per envelope, durably (temp file, fsync, rename), before
the envelope is committed (under the message id chosen in advance) and so before it
answers ``250``:

    {"id": ..., "sender": "alice@m-paris.valise.local" | null,
     "integrator": "dms" | null,          # who authenticated the submission, if anyone
     "recipients": ["registry@m-hanoi.valise.local"], "site": "M-HANOI",
     "mailbox": "registry", "arrival": ISO-8601, "expires": ISO-8601,
     "headers": <latin-1 header section>,
     "failed": {"reason": ..., "at": ISO-8601},  # once it failed, until the DSN is out
     "failed_sites": [[site, reason], ...]       # the destinations that failed, each
    }                                            # with its own reason (absent: all)

The file is removed when a receipt arrives (the message was delivered) or once the
DSN has been handed to the origin's outbound delivery; a file that says ``failed``
is a DSN still to send. A file whose message never reached the store (a crash
between the write and the commit; the client saw no 250) is swept away later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.site.files import write_private

FOLDER = "smtp-sent"


@dataclass(frozen=True)
class SentRecord:
    message_id: str
    sender: str | None
    recipients: tuple[str, ...]
    site: str
    mailbox: str
    arrival: datetime
    expires: datetime
    headers: bytes
    failed_reason: str | None = None
    failed_at: datetime | None = None
    integrator: str | None = None  # the AUTH name of the submission (None: anonymous)
    # (site, reason) of each destination that failed; empty: every recipient failed
    # with failed_reason (a record written before per-destination state).
    failed_sites: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "id": self.message_id,
            "sender": self.sender,
            "integrator": self.integrator,
            "recipients": list(self.recipients),
            "site": self.site,
            "mailbox": self.mailbox,
            "arrival": self.arrival.isoformat(),
            "expires": self.expires.isoformat(),
            "headers": self.headers.decode("latin-1"),
        }
        if self.failed_reason is not None and self.failed_at is not None:
            doc["failed"] = {"reason": self.failed_reason, "at": self.failed_at.isoformat()}
        if self.failed_sites:
            doc["failed_sites"] = [list(f) for f in self.failed_sites]
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SentRecord:
        doc = json.loads(data)
        failed = doc.get("failed") or {}
        return cls(
            message_id=str(doc["id"]),
            sender=doc["sender"],
            integrator=doc.get("integrator"),
            recipients=tuple(doc["recipients"]),
            site=str(doc["site"]),
            mailbox=str(doc["mailbox"]),
            arrival=datetime.fromisoformat(doc["arrival"]),
            expires=datetime.fromisoformat(doc["expires"]),
            headers=str(doc.get("headers", "")).encode("latin-1"),
            failed_reason=failed.get("reason"),
            failed_at=datetime.fromisoformat(failed["at"]) if "at" in failed else None,
            failed_sites=tuple((str(site), str(why)) for site, why in doc.get("failed_sites", [])),
        )


class SentRecords:
    """The folder of records of one site."""

    def __init__(self, site_dir: Path) -> None:
        self.folder = site_dir / FOLDER

    def _path(self, message_id: str) -> Path:
        if not message_id or "/" in message_id or message_id.startswith("."):
            raise ValueError(f"not a message id: {message_id!r}")
        return self.folder / f"{message_id}.json"

    def write(self, record: SentRecord) -> None:
        """Durably (re)write the record: it exists, whole, once this returns."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        write_private(self._path(record.message_id), record.to_json())
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself must survive a power cut
        finally:
            os.close(fd)

    def read(self, message_id: str) -> SentRecord | None:
        try:
            return SentRecord.from_json(self._path(message_id).read_bytes())
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def remove(self, message_id: str) -> None:
        self._path(message_id).unlink(missing_ok=True)

    def all(self) -> Iterator[SentRecord]:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            try:
                yield SentRecord.from_json(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn temp file never gets the .json name; skip junk
