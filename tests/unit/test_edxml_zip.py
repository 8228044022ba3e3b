"""ZIP attachments: the SDK's wrapping told apart from a file, and unzipping that
never trusts an archive's own sizes."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridges import edxml

BOUNDS = dict(max_total_bytes=1 << 20, max_entries=4, max_ratio=100.0)


def make_zip(path: Path, entries: dict[str, bytes], *, encrypted: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    raw = bytearray(path.read_bytes())
    if encrypted:  # zipfile writes no encryption: set the flag in the central directory
        at = raw.index(b"PK\x01\x02")
        while True:
            size = int.from_bytes(raw[at + 28 : at + 30], "little")
            if raw[at + 46 : at + 46 + size] == encrypted.encode():
                raw[at + 8] |= 0x1
                break
            at = raw.index(b"PK\x01\x02", at + 4)
        path.write_bytes(bytes(raw))
    return path


def test_a_zip_of_one_file_unzips(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    archive = make_zip(tmp_path / "a.zip", {"7091b48b.pdf": data})
    out = tmp_path / "out"
    out.mkdir()
    (entry,) = edxml.unzip_bounded(archive, out, **BOUNDS)  # type: ignore[arg-type]
    assert (entry.name, entry.size, entry.path.read_bytes()) == ("7091b48b.pdf", 10_000, data)
    assert entry.path.parent == out and (entry.path.stat().st_mode & 0o777) == 0o600
    assert edxml.check_zip(archive, **BOUNDS) == [("7091b48b.pdf", 10_000)]  # type: ignore[arg-type]


def _bomb(path: Path, megabytes: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("zeros.pdf", "w") as f:
        block = bytes(1 << 20)
        for _ in range(megabytes):
            f.write(block)
    return path


def test_a_bomb_is_refused_without_writing_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _bomb(tmp_path / "bomb.zip", 200)  # 200 MB of zeros in about 200 KB
    assert bomb.stat().st_size < 1 << 20
    out = tmp_path / "out"
    out.mkdir()
    written: list[int] = []
    unlink = Path.unlink

    def recording_unlink(self: Path, missing_ok: bool = False) -> None:
        if self.exists():
            written.append(self.stat().st_size)
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording_unlink)
    bound = 8 << 20
    with pytest.raises(edxml.ZipBombError, match=f"more than {bound} bytes"):
        edxml.unzip_bounded(bomb, out, max_total_bytes=bound, max_entries=4, max_ratio=10_000)
    assert list(out.iterdir()) == [] and written and sum(written) <= bound
    with pytest.raises(edxml.ZipBombError, match="ratio 100"):
        edxml.check_zip(bomb, max_total_bytes=1 << 40, max_entries=4, max_ratio=100)
    assert isinstance(edxml.ZipBombError("x"), edxml.EdxmlError)


@pytest.mark.parametrize("total", [1000, 1001])
def test_total_bound_n_and_n_plus_one(total: int, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"a.txt": os.urandom(1000)})
    if total >= 1000:
        assert edxml.check_zip(archive, max_total_bytes=total, max_entries=1, max_ratio=10)
    with pytest.raises(edxml.ZipBombError):
        edxml.check_zip(archive, max_total_bytes=999, max_entries=1, max_ratio=10)


def test_entry_count_n_and_n_plus_one(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {f"{i}.txt": b"x" for i in range(4)})
    assert len(edxml.check_zip(archive, max_total_bytes=100, max_entries=4, max_ratio=10)) == 4
    with pytest.raises(edxml.ZipBombError, match="4 entries, more than 3"):
        edxml.check_zip(archive, max_total_bytes=100, max_entries=3, max_ratio=10)


def test_names_are_labels_only(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip", {"../x.txt": b"1", "/etc/passwd": b"2", "a\\..\\..\\y.txt": b"3"}
    )
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    entries = edxml.unzip_bounded(archive, out, **BOUNDS)  # type: ignore[arg-type]
    assert [e.name for e in entries] == ["x.txt", "passwd", "y.txt"]
    assert all(e.path.parent == out for e in entries)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        ["a.zip", *(e.path.name for e in entries)]
    )
    dots = make_zip(tmp_path / "b.zip", {"..": b"1"})
    with pytest.raises(edxml.ZipBombError, match="no file name"):
        edxml.unzip_bounded(dots, out, **BOUNDS)  # type: ignore[arg-type]


def test_an_encrypted_entry_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"a.txt": b"1", "b.txt": b"2"}, encrypted="b.txt")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(edxml.ZipBombError, match=r"'b\.txt' is encrypted"):
        edxml.unzip_bounded(archive, out, **BOUNDS)  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


def test_not_a_zip_and_a_corrupt_zip(tmp_path: Path) -> None:
    plain = tmp_path / "p.pdf"
    plain.write_bytes(b"%PDF-1.4")
    with pytest.raises(edxml.ZipBombError, match="not a readable ZIP"):
        edxml.check_zip(plain, **BOUNDS)  # type: ignore[arg-type]
    archive = make_zip(tmp_path / "a.zip", {"a.txt": os.urandom(5000)})
    raw = bytearray(archive.read_bytes())
    raw[100] ^= 0xFF  # inside the compressed data
    archive.write_bytes(bytes(raw))
    with pytest.raises(edxml.ZipBombError, match=r"unreadable|not a readable"):
        edxml.check_zip(archive, **BOUNDS)  # type: ignore[arg-type]


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "name", "declared", "wrapped"),
    [
        (_zip_bytes({"u.edxml": b"x"}), "a.doc", ("application/zip",), True),  # SDK, Bkav
        (_zip_bytes({"u.txt": b"x"}), "a.txt", ("text/plain", "application/zip"), True),
        (_zip_bytes({"u.pdf": b"x"}), "a.pdf", ("application/pdf",), True),  # undeclared
        (_zip_bytes({"u.pdf": b"x"}), "a.txt", ("text/plain",), False),
        (
            _zip_bytes({"[Content_Types].xml": b"x", "word/document.xml": b"y"}),
            "a.docx",
            ("application/zip", "application/docx"),
            False,
        ),  # a real .docx
        (_zip_bytes({"u.pdf": b"x"}), "a.zip", ("application/zip",), False),  # a real .zip
        (b"%PDF-1.4", "a.pdf", ("application/zip",), False),
        (b"PK\x03\x04 broken", "a.pdf", ("application/zip",), False),
    ],
)
def test_is_wrapped_zip(
    content: bytes, name: str, declared: tuple[str, ...], wrapped: bool
) -> None:
    assert edxml.is_wrapped_zip(content, name, declared) is wrapped


def test_an_entry_without_a_name_is_a_typed_refusal_not_an_index_error(tmp_path: Path) -> None:
    # ZipInfo.is_dir() raises IndexError on an empty name (review 12 F3): never called.
    from tests.unit.test_review12_edxml import zip_with_empty_entry_name

    archive = tmp_path / "a.pdf"
    archive.write_bytes(zip_with_empty_entry_name())
    # One entry declared a ZIP: wrapped, so the submission runs check_zip, which refuses it.
    assert edxml.is_wrapped_zip(archive, "a.pdf", ["application/zip"]) is True
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(edxml.ZipBombError, match="no file name"):
        edxml.unzip_bounded(archive, out, **BOUNDS)  # type: ignore[arg-type]
    with pytest.raises(edxml.ZipBombError, match="no file name"):
        edxml.check_zip(archive, **BOUNDS)  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_is_wrapped_zip_never_raises_on_a_mutated_archive(at: int, junk: bytes) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("7091b48b.pdf", b"%PDF-1.4 " * 20)
    raw = out.getvalue()
    at %= len(raw)
    mutated = raw[:at] + junk + raw[at + len(junk) :]
    assert edxml.is_wrapped_zip(mutated, "a.pdf", ["application/zip"]) in (True, False)
