"""The file API streams: 1 GiB through seal and open in constant memory; hostile names."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crypto.recipes import CHUNK_BYTES
from envelope.seal import new_routing
from gateway.relay.envelope_io import InputPart, open_to_dir, seal_to_file
from tests.conftest import NOW, make_site

GIB = 1 << 30
RSS_LIMIT_MB = 100

CHILD = r"""
import json, sys
from pathlib import Path
from envelope.seal import new_routing
from gateway.relay.envelope_io import InputPart, open_to_dir, seal_to_file
from tests.conftest import NOW, make_site
hq, paris = make_site("HQ", 1), make_site("M-PARIS", 2)
mode, src, env, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
if mode == "seal":
    routing = new_routing(origin="HQ", destinations=["M-PARIS"], now=NOW)
    seal_to_file(env, routing=routing, sender=hq.signing, recipients=[paris.recipient],
                 inputs=[InputPart(src, "big.bin")], durable=False)
else:
    open_to_dir(env, out, sender=hq.signing.public, site="M-PARIS", key=paris.decryption)
# VmHWM is this exec's own peak; ru_maxrss would include the parent's (pytest's) size,
# which Linux carries across fork.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(json.dumps({"maxrss_mb": hwm_kb / 1024}))
"""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def test_one_gib_seals_and_opens_under_100_mb_rss(tmp_path: Path) -> None:
    if shutil.disk_usage(tmp_path).free < 4 * GIB:
        pytest.skip("needs 4 GiB of free disk for the 1 GiB streaming test")
    src = tmp_path / "big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    with src.open("wb") as f:
        for _ in range(GIB // len(block)):
            f.write(block)
    env, out = tmp_path / "big.valise", tmp_path / "out"
    peaks = {}
    for mode in ("seal", "open"):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(src), str(env), str(out)],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parents[2],
        )
        assert done.returncode == 0, done.stderr
        peaks[mode] = json.loads(done.stdout)["maxrss_mb"]
    print(f"peak RSS: seal {peaks['seal']:.1f} MB, open {peaks['open']:.1f} MB")
    assert peaks["seal"] < RSS_LIMIT_MB and peaks["open"] < RSS_LIMIT_MB
    assert _sha256(out / "big.bin") == _sha256(src)


def test_file_api_round_trip_across_chunk_boundaries(tmp_path: Path) -> None:
    hq, paris = make_site("HQ", 1), make_site("M-PARIS", 2)
    sizes = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 9 * CHUNK_BYTES + 3]
    inputs = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"in{i}.bin"
        p.write_bytes(bytes((i + j) % 251 for j in range(size)))
        inputs.append(InputPart(p, f"part-{size}.bin"))
    routing = new_routing(origin="HQ", destinations=["M-PARIS"], now=NOW)
    seal_to_file(
        tmp_path / "e.valise",
        routing=routing,
        sender=hq.signing,
        recipients=[paris.recipient],
        inputs=inputs,
    )
    opened = open_to_dir(
        tmp_path / "e.valise",
        tmp_path / "out",
        sender=hq.signing.public,
        site="M-PARIS",
        key=paris.decryption,
    )
    for part, path in zip(inputs, opened.files, strict=True):
        assert path.read_bytes() == part.path.read_bytes()
        assert path.name == part.name


def test_hostile_sealed_names_land_inside_the_output_folder(tmp_path: Path) -> None:
    hq, paris = make_site("HQ", 1), make_site("M-PARIS", 2)
    hostile = ["../../escape.txt", "/etc/passwd", "..", "same.txt", "same.txt", "a\\..\\b.txt"]
    inputs = []
    for i, name in enumerate(hostile):
        p = tmp_path / f"in{i}"
        p.write_bytes(name.encode())
        inputs.append(InputPart(p, name))
    routing = new_routing(origin="HQ", destinations=["M-PARIS"], now=NOW)
    seal_to_file(
        tmp_path / "e.valise",
        routing=routing,
        sender=hq.signing,
        recipients=[paris.recipient],
        inputs=inputs,
    )
    out = tmp_path / "deep" / "out"
    opened = open_to_dir(
        tmp_path / "e.valise", out, sender=hq.signing.public, site="M-PARIS", key=paris.decryption
    )
    assert len({p.name for p in opened.files}) == len(hostile)
    for path, name in zip(opened.files, hostile, strict=True):
        assert path.parent == out
        assert path.read_bytes() == name.encode()
    assert (
        not (tmp_path / "escape.txt").exists() and not (tmp_path / "deep" / "escape.txt").exists()
    )
