"""What an edXML document means for Valise's routing fields.

Rules:
- Pure functions of an :class:`EdxmlDocument`; nothing here refuses a document: a
  value the envelope cannot carry maps to None or a default, and the kept header
  still says it.
- ``expires`` uses the DueDate only when it ends later than the default lifetime
  would: a deadline is never a reason to drop a document sooner.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from gateway.bridges.edxml.dates import end_of_day
from gateway.bridges.edxml.model import EdxmlDocument, Kind

# OtherInfo/Priority: 0 thường, 1 khẩn, 2 thượng khẩn, 3 hỏa tốc, 4 hỏa tốc hẹn giờ.
PRIORITY_IN = {"0": "routine", "1": "priority", "2": "immediate", "3": "flash", "4": "flash"}
STATUS_CLASS = "edxml-status"
_CLASS_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,56}")
_DOSSIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")


def kind(doc: EdxmlDocument) -> str:
    """``new``, ``revocation``, ``update``, ``replacement`` or ``status``."""
    return doc.kind.value


def doc_class(doc: EdxmlDocument) -> str:
    """``edxml-<DocumentType/Type>`` (``edxml`` when it is no class name);
    ``edxml-status`` for a status message."""
    if doc.kind is Kind.STATUS:
        return STATUS_CLASS
    t = doc.document_type.lower()
    return f"edxml-{t}" if _CLASS_RE.fullmatch(t) else "edxml"


def dossier(doc: EdxmlDocument) -> str | None:
    """``CodeNumber/CodeNotation`` (a status: ResponseFor/Code) when it is a valid
    dossier id, else None."""
    if doc.kind is Kind.STATUS and doc.response_for is not None:
        code = doc.response_for.code
    else:
        code = "/".join(p for p in (doc.code_number, doc.code_notation) if p)
    return code if _DOSSIER_RE.fullmatch(code) else None


def originator(doc: EdxmlDocument) -> str | None:
    s = doc.sender
    if not s.organ_id:
        return None
    return f"{s.organ_name} <{s.organ_id}>" if s.organ_name else s.organ_id


def priority(doc: EdxmlDocument) -> str:
    return PRIORITY_IN.get(doc.priority, "routine")


def wanted_organs(doc: EdxmlDocument) -> tuple[str, ...]:
    """The organ ids the document is for: each To/OrganId; for a status the organ it
    answers (ResponseFor/OrganId), whose site gets it back."""
    if doc.kind is Kind.STATUS:
        return (doc.response_for.organ_id,) if doc.response_for else ()
    return tuple(dict.fromkeys(r.organ_id for r in doc.recipients if r.organ_id))


def expires(
    doc: EdxmlDocument, now: datetime, default_lifetime: timedelta = timedelta(hours=1)
) -> datetime | None:
    """The end of DueDate (23:59:59 Vietnam time) when that is later than
    ``now + default_lifetime``; else None, meaning: use the default."""
    if doc.due_date is None:
        return None
    end = end_of_day(doc.due_date)
    return end if end > now + default_lifetime else None
