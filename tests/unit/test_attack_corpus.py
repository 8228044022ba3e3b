"""The attack corpus (tests/vectors/attacks/): every hostile envelope is refused, precisely.

Each file of ``attacks/MANIFEST.json`` must be rejected by :func:`envelope.open.open_bytes`
with exactly its ``expected_error`` class (a one-line message), and by the streaming
:func:`gateway.relay.envelope_io.open_to_dir` with ``expected_error_streaming`` when the entry
has one (the one-pass reader meets a bad AEAD tag before it has a whole part's digest),
else the same class, leaving nothing in the output folder. The untouched base envelopes
must open, in memory and to a folder.

Determinism. HPKE encapsulation is randomized inside pyca/cryptography, so the generator
(``tests/vectors/make_attacks.py``) persists its base envelopes and derives every attack
from them. The tests therefore check (1) that re-running the derivation in memory from the
committed bases yields every committed attack file and the committed MANIFEST.json byte
for byte, and (2) that re-sealing each base from its fixed seeds, with its recorded wraps
replayed in place of the random HPKE encapsulation, gives back the committed base byte for
byte: everything in the corpus except those wraps is reproducible.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from envelope import errors
from envelope.errors import EnvelopeError
from envelope.open import open_bytes
from gateway.relay.envelope_io import open_to_dir
from tests.vectors import make_attacks as gen

HERE = gen.HERE
MANIFEST: dict[str, Any] = json.loads((HERE / "MANIFEST.json").read_text())
ATTACKS: list[dict[str, str]] = MANIFEST["attacks"]
BASES: list[dict[str, Any]] = MANIFEST["bases"]
KEYS = gen.fixed_keys()


def _error_class(name: str) -> type[EnvelopeError]:
    cls = getattr(errors, name, None)
    assert isinstance(cls, type) and issubclass(cls, EnvelopeError), name
    return cls


def _open(data: bytes) -> object:
    return open_bytes(data, sender=KEYS.sender.public, site=gen.RECIPIENT_SITE, key=KEYS.recipient)


def _open_to_dir(path: Path, out_dir: Path) -> object:
    return open_to_dir(
        path, out_dir, sender=KEYS.sender.public, site=gen.RECIPIENT_SITE, key=KEYS.recipient
    )


def _assert_one_line(exc: BaseException) -> None:
    message = str(exc)
    assert message, f"{type(exc).__name__} has an empty message"
    assert "\n" not in message and "\r" not in message, (
        f"{type(exc).__name__} message is not one line: {message!r}"
    )


@pytest.mark.parametrize("entry", ATTACKS, ids=[e["file"] for e in ATTACKS])
def test_open_bytes_rejects_with_the_expected_error(entry: dict[str, str]) -> None:
    expected = _error_class(entry["expected_error"])
    data = (HERE / entry["file"]).read_bytes()
    with pytest.raises(expected) as info:
        _open(data)
    assert type(info.value) is expected, (
        f"{entry['file']}: {type(info.value).__name__}, not {expected.__name__}: {info.value}"
    )
    _assert_one_line(info.value)


@pytest.mark.parametrize("entry", ATTACKS, ids=[e["file"] for e in ATTACKS])
def test_open_to_dir_rejects_and_leaves_nothing(entry: dict[str, str], tmp_path: Path) -> None:
    expected = _error_class(entry.get("expected_error_streaming", entry["expected_error"]))
    path = HERE / entry["file"]
    absent, present = tmp_path / "absent", tmp_path / "present"
    present.mkdir()
    for out_dir in (absent, present):
        with pytest.raises(expected) as info:
            _open_to_dir(path, out_dir)
        assert type(info.value) is expected, (
            f"{entry['file']}: {type(info.value).__name__}, not {expected.__name__}: {info.value}"
        )
        _assert_one_line(info.value)
    assert not absent.exists(), "a folder open_to_dir created was left behind"
    assert list(present.iterdir()) == [], "open_to_dir left files in the output folder"


@pytest.mark.parametrize("base", BASES, ids=[b["file"] for b in BASES])
def test_base_envelopes_open(base: dict[str, Any], tmp_path: Path) -> None:
    data = (HERE / base["file"]).read_bytes()
    spec = gen.BASE_BY_NAME[base["file"].removesuffix(".valise")]
    parsed, sealed, parts = _open(data)  # type: ignore[misc]
    assert parts == [d for _, _, d in spec.parts]
    assert [(p.name, p.media_type, p.size) for p in sealed.parts] == [
        (n, t, len(d)) for n, t, d in spec.parts
    ]
    assert parsed.head.routing.origin == gen.SENDER_SITE
    assert parsed.head.routing.destinations == tuple(s for s, _ in spec.destinations)
    opened = _open_to_dir(HERE / base["file"], tmp_path / "out")
    files = opened.files  # type: ignore[attr-defined]
    assert [f.read_bytes() for f in files] == [d for _, _, d in spec.parts]


def test_manifest_lists_exactly_the_corpus() -> None:
    on_disk = {p.name for p in HERE.glob("*.valise")}
    listed = [e["file"] for e in ATTACKS] + [b["file"] for b in BASES]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert set(listed) == on_disk
    for entry in [*ATTACKS, *BASES]:
        data = (HERE / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        assert len(data) < 1_000_000, f"{entry['file']} is not commit-sized"
    for entry in ATTACKS:
        _error_class(entry["expected_error"])
        if "expected_error_streaming" in entry:
            _error_class(entry["expected_error_streaming"])
        assert entry["shows"], entry["file"]
    provenance = MANIFEST["provenance"]
    assert provenance["generator"] == "tests/vectors/make_attacks.py"
    assert provenance["sites"][gen.SENDER_SITE]["signing_key_id"] == KEYS.sender.key_id


def test_attacks_are_derived_deterministically_from_the_committed_bases() -> None:
    """Re-running the generator in memory on the committed bases rewrites the same bytes."""
    bases = gen.load_bases(HERE, KEYS)
    attacks = gen.build_attacks(bases, KEYS)
    for attack in attacks:
        assert attack.data == (HERE / attack.file).read_bytes(), attack.file
    assert gen.manifest_document(KEYS, bases, attacks) == (HERE / "MANIFEST.json").read_text()


@pytest.mark.parametrize("spec", gen.BASES, ids=[b.file for b in gen.BASES])
def test_bases_reseal_byte_for_byte_with_their_recorded_wraps(spec: gen.BaseSpec) -> None:
    """Only the HPKE encapsulations are random: with them replayed, a base is reproducible."""
    committed = (HERE / spec.file).read_bytes()
    assert gen.seal_base(spec, KEYS, wrap_fn=gen.recorded_wraps(committed)) == committed
