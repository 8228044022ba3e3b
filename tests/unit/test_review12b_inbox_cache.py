"""Review 12b: the read_info cache (edxml_inbox.read_info)."""

from __future__ import annotations

import errno
import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from gateway.bridges import edxml
from gateway.bridges.edxml import inbox as edxml_inbox
from tests.unit.test_edxml_readback import attachment, document


def _deliver(folder: Path, header: bytes) -> dict[str, Any]:
    """A delivered folder as write_inbox leaves it: one attachment, the kept header last."""
    folder.mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"x")
    (folder / edxml.HEADER_PART_NAME).write_bytes(header)
    meta = {
        "subject": "s",
        "parts": [
            {"name": "a.txt", "media_type": "text/plain", "size": 1},
            {
                "name": edxml.HEADER_PART_NAME,
                "media_type": edxml.HEADER_MEDIA_TYPE,
                "size": len(header),
            },
        ],
    }
    (folder / ".valise.json").write_text(json.dumps(meta))
    return meta


def _header(document_id: str = "D1") -> bytes:
    data = document("", attachment("cid:1", "a.txt", "text/plain")).replace(
        b"</edXML:MessageHeader>",
        f"<edXML:DocumentId>{document_id}</edXML:DocumentId></edXML:MessageHeader>".encode(),
    )
    return edxml.parse_edxml(data, max_bytes=len(data)).header_xml


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    edxml_inbox.clear_cache()
    yield
    edxml_inbox.clear_cache()


def test_a_transient_read_error_is_not_cached_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One EMFILE/EIO while reading a good kept header must not make the item a plain
    document (no kind, no unzipped view) for the rest of the process's life."""
    folder = tmp_path / "inbox" / "M1"
    meta = _deliver(folder, _header())
    real = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self.name == edxml.HEADER_PART_NAME:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    assert edxml_inbox.read_info(folder, meta) is None  # the moment of trouble
    monkeypatch.setattr(Path, "read_bytes", real)
    info = edxml_inbox.read_info(folder, meta)
    assert info is not None and info.document_id == "D1"


def test_the_cache_is_bounded_in_bytes_not_only_in_entries(tmp_path: Path) -> None:
    """A peer's kept header may hold ~1M characters of text (MAX_HEADER_TEXT_CHARS),
    all of which EdxmlInfo keeps (document_id, replaces, status_description). With
    INFO_CACHE = 4096 entries that is GiBs retained by listing the inbox. Eight such
    items must not keep ~8 MB alive once listed."""
    big = "9" * 900_000
    header = _header(big)
    metas = [(tmp_path / "inbox" / f"M{i}", None) for i in range(8)]
    metas = [(f, _deliver(f, header)) for f, _ in metas]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for folder, meta in metas:
            info = edxml_inbox.read_info(folder, meta)
            assert info is not None
        del info
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 2_000_000, f"{retained} bytes kept by the read_info cache"
