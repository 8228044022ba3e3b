"""The offline tool end to end: valise keys generate / seal / open / inspect."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.app import ExitCode
from gateway.cli.main import main
from tests.support.cli import valise as run


@pytest.fixture()
def net(tmp_path: Path) -> Path:
    runner = CliRunner()
    for site in ("HQ", "M-PARIS", "M-HANOI"):
        result = runner.invoke(
            main, ["keys", "generate", "--site", site, "--dir", str(tmp_path / site)]
        )
        assert result.exit_code == 0, result.output
    (tmp_path / "note.txt").write_text("Note verbale no. 1\n")
    (tmp_path / "scan.pdf").write_bytes(os.urandom(150_000))
    return tmp_path


def seal(net: Path, out: str = "e.valise", *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "seal",
        "--keys",
        str(net / "HQ"),
        "--to",
        str(net / "M-PARIS" / "M-PARIS.pub.xml"),
        "--in",
        str(net / "note.txt"),
        "--in",
        str(net / "scan.pdf"),
        "--out",
        str(net / out),
        "--subject",
        "Visa dossier",
        "--priority",
        "immediate",
        "--dossier",
        "VISA/2026/0001",
        "--class",
        "visa",
        *extra,
    )


def test_keys_are_private_and_public_document_is_written(net: Path) -> None:
    d = net / "HQ"
    assert (d / "HQ.signing.key").stat().st_mode & 0o777 == 0o600
    assert (d / "HQ.encryption.key").stat().st_mode & 0o777 == 0o600
    assert (d / "HQ.pub.xml").read_bytes().startswith(b"<public-key")


def test_keys_generate_refuses_to_overwrite(net: Path) -> None:
    result = CliRunner().invoke(
        main, ["keys", "generate", "--site", "HQ", "--dir", str(net / "HQ")]
    )
    assert result.exit_code == ExitCode.FILES
    assert "refusing to overwrite" in result.output


def test_keys_generate_rejects_bad_site_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["keys", "generate", "--site", "paris", "--dir", str(tmp_path)]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "site id" in result.output


def test_seal_inspect_open_round_trip(net: Path) -> None:
    sealed = seal(net)
    assert sealed.returncode == 0, sealed.stderr
    message_id = sealed.stdout.strip()

    inspected = run("inspect", str(net / "e.valise"), "--json")
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["message_id"] == message_id
    assert info["origin"] == "HQ" and info["destinations"] == ["M-PARIS"]
    assert info["priority"] == "immediate" and info["class"] == "visa"
    assert info["dossier"] == "VISA/2026/0001"
    assert len(info["manifest"]["parts"]) == 2
    # The subject and file names are sealed: inspect cannot see them.
    assert "Visa dossier" not in inspected.stdout and "scan.pdf" not in inspected.stdout
    assert b"scan.pdf" not in (net / "e.valise").read_bytes()

    text = run("inspect", str(net / "e.valise"))
    assert "M-PARIS" in text.stdout and "signed by key" in text.stdout

    opened = run(
        "open",
        "--keys",
        str(net / "M-PARIS"),
        "--from",
        str(net / "HQ" / "HQ.pub.xml"),
        "--in",
        str(net / "e.valise"),
        "--out-dir",
        str(net / "out"),
    )
    assert opened.returncode == 0, opened.stderr
    assert (net / "out" / "note.txt").read_bytes() == (net / "note.txt").read_bytes()
    assert (net / "out" / "scan.pdf").read_bytes() == (net / "scan.pdf").read_bytes()
    assert "Visa dossier" in opened.stderr


def test_open_by_a_non_recipient_fails_and_leaves_nothing(net: Path) -> None:
    assert seal(net).returncode == 0
    out = net / "out"
    result = run(
        "open",
        "--keys",
        str(net / "M-HANOI"),
        "--from",
        str(net / "HQ" / "HQ.pub.xml"),
        "--in",
        str(net / "e.valise"),
        "--out-dir",
        str(out),
    )
    assert result.returncode == ExitCode.REJECTED
    assert result.stderr.count("\n") == 1 and "no recipient stanza" in result.stderr
    assert not out.exists()


def test_open_with_wrong_from_is_rejected(net: Path) -> None:
    assert seal(net).returncode == 0
    out = net / "out"
    out.mkdir()
    result = run(
        "open",
        "--keys",
        str(net / "M-PARIS"),
        "--from",
        str(net / "M-HANOI" / "M-HANOI.pub.xml"),
        "--in",
        str(net / "e.valise"),
        "--out-dir",
        str(out),
    )
    assert result.returncode == ExitCode.REJECTED
    assert "not from M-HANOI" in result.stderr
    assert list(out.iterdir()) == []


def test_open_of_a_tampered_part_leaves_nothing(net: Path) -> None:
    assert seal(net).returncode == 0
    env = net / "e.valise"
    data = bytearray(env.read_bytes())
    data[-100] ^= 1  # inside the last part's ciphertext
    env.write_bytes(bytes(data))
    out = net / "out"
    out.mkdir()
    result = run(
        "open",
        "--keys",
        str(net / "M-PARIS"),
        "--from",
        str(net / "HQ" / "HQ.pub.xml"),
        "--in",
        str(env),
        "--out-dir",
        str(out),
    )
    assert result.returncode == ExitCode.REJECTED
    assert "rejected" in result.stderr
    assert list(out.iterdir()) == []


def test_seal_refuses_to_overwrite_and_bad_values(net: Path) -> None:
    assert seal(net).returncode == 0
    again = seal(net)
    assert again.returncode == ExitCode.FILES and "refusing to overwrite" in again.stderr
    bad = seal(net, "f.valise", "--expires", "yesterday")
    assert bad.returncode == ExitCode.USAGE and "ISO 8601" in bad.stderr
    past = seal(net, "g.valise", "--expires", "2020-01-01T00:00:00Z")
    assert past.returncode == ExitCode.USAGE and "expires" in past.stderr
    assert not (net / "f.valise").exists() and not (net / "g.valise").exists()


def test_gateway_refuses_keys_readable_by_others(net: Path) -> None:
    (net / "HQ" / "HQ.signing.key").chmod(0o644)
    result = seal(net)
    assert result.returncode == ExitCode.FILES
    assert "readable by others" in result.stderr


def test_inspect_rejects_garbage_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.valise").write_bytes(b"not an envelope at all")
    result = run("inspect", str(tmp_path / "x.valise"))
    assert result.returncode == ExitCode.REJECTED
    assert result.stderr.strip().count("\n") == 0 and "bad magic" in result.stderr


def test_sealed_names_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    from gateway.relay.envelope_io import safe_name

    for hostile in ("../../etc/passwd", "/abs/path", "..\\..\\win.ini", "..", ".hidden", "a\x00b"):
        name = safe_name(hostile)
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_sealed_names_cannot_display_as_another_name() -> None:
    from gateway.relay.envelope_io import safe_name

    for hostile in (
        "invoice\u202efdp.exe",
        "a\u2066b\u2069.pdf",
        "x\u2028y",
        "n\x85ame",
        "z\u200f",
    ):
        name = safe_name(hostile)
        assert not any(c in name for c in "\u202e\u2066\u2069\u2028\x85\u200f"), repr(name)
    assert safe_name("invoice\u202efdp.exe") == "invoice_fdp.exe"
