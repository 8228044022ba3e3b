"""Why a document received here is not delivered yet, as the operator reads it
(valise inbox list, status, queue list, doctor).

Rules:
- Computed from what the store and the directory already hold, the way local delivery
  would find it (gateway/relay/local_delivery.py): a document stays ``received`` while its
  receipt cannot be sealed (its origin has no active encryption key in our directory:
  "receipt deferred"), while its hand-off to the mailbox is deferred (its inbox folder
  is written, the item not yet marked available), or until the gateway opens it. No
  state is stored for it: the directory says when it ends.
- The reason names the origin's key state in the words the gateway logs it with
  (``receipt_deferred``), so the operator can match the two.
- Pure: no I/O; the caller says whether the document's inbox folder exists.
"""

from __future__ import annotations

from envelope.receipt import RECEIPT_CLASS
from routing.directory import Directory, DirectoryError

RECEIPT_DEFERRED = "receipt deferred"


def receipt_blocker(directory: Directory, origin: str) -> str | None:
    """Why a receipt to ``origin`` cannot be sealed now (``seal_reply`` would raise),
    or None. A site missing from the directory is not a deferral: local delivery
    refuses its documents at once."""
    try:
        entry = directory.site(origin)
    except DirectoryError:
        return None
    try:
        entry.active_encryption_key()
    except DirectoryError as exc:
        return str(exc)
    return None


def waiting_reason(
    origin: str, doc_class: str, directory: Directory | None, *, opened: bool
) -> str:
    """Why an item from ``origin`` is still ``received`` here (``opened``: its inbox
    folder is written; ``directory``: ours, None if it cannot be read)."""
    if doc_class == RECEIPT_CLASS:
        return "a receipt for a message sent from here, not checked yet (valise serve does)"
    blocker = None if directory is None else receipt_blocker(directory, origin)
    if blocker is not None:
        return f"{RECEIPT_DEFERRED}: {blocker}"
    if opened:
        return (
            "opened; its hand-off to the mailbox is deferred "
            "(the log says why: local_delivery_deferred)"
        )
    return "not opened yet (valise serve opens it)"
