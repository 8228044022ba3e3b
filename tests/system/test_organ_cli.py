"""``valise organ add | remove | list`` (issue 12, Addressing): HQ publishes which site
serves which organ id in the signed directory; every refusal publishes nothing; a
mission has the list after its next directory fetch.

Offline cases: an HQ folder with paper missions (tests/support/offline_hq.py),
the CLI in this process. One live case: HQ and a mission on loopback."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli.main import main
from gateway.demo.network import Network
from gateway.trust.publish import publish
from routing.directory import MAX_DIRECTORY_BYTES, Directory
from routing.organs import MAX_ORGAN_NAME_CHARS, MAX_ORGANS_PER_SITE, Organ
from tests.support.drill import drill_config, poll
from tests.support.offline_hq import add_mission, make_hq

H41 = "000.00.00.H41"
NAME = "UBND Tỉnh Nghệ An"


def valise(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture()
def hq(tmp_path: Path) -> Path:
    folder = make_hq(tmp_path)
    add_mission(folder, "M-PARIS")
    add_mission(folder, "M-HANOI")
    return folder


def organs(site_dir: Path, *extra: str) -> list[dict[str, str]]:
    out = valise("organ", "list", "--json", "--dir", str(site_dir), *extra)
    assert out.exit_code == 0, out.output
    rows: list[dict[str, str]] = json.loads(out.stdout)
    return rows


def held(hq: Path) -> bytes:
    return (hq / "directory.xml").read_bytes()


def serial(site_dir: Path) -> int:
    out = valise("directory", "show", "--json", "--dir", str(site_dir))
    value: int = json.loads(out.stdout)["serial"]
    return value


def test_add_list_show_remove(hq: Path) -> None:
    before = serial(hq)
    out = valise("organ", "add", H41, "--site", "M-PARIS", "--name", NAME, "--dir", str(hq))
    assert out.exit_code == 0, out.output
    assert out.stdout == f"organ {H41} served by M-PARIS (directory serial {before + 1})\n"
    assert valise("organ", "add", "G22", "--site", "M-PARIS", "--dir", str(hq)).exit_code == 0
    assert organs(hq) == [
        {"organ": H41, "site": "M-PARIS", "status": "active", "name": NAME},
        {"organ": "G22", "site": "M-PARIS", "status": "active", "name": ""},
    ]
    assert organs(hq, "--site", "M-HANOI") == []
    table = valise("organ", "list", "--dir", str(hq)).stdout.splitlines()
    assert table[0].split() == ["ORGAN", "SITE", "STATUS", "NAME"]
    assert table[1].split() == [H41, "M-PARIS", "active", *NAME.split()]
    # the same add again: nothing published
    again = valise("organ", "add", H41, "--site", "M-PARIS", "--name", NAME, "--dir", str(hq))
    assert again.exit_code == 0 and "already" in again.stdout
    assert serial(hq) == before + 2
    # the views: directory show (JSON and text), site show (JSON and text)
    summary = json.loads(valise("directory", "show", "--json", "--dir", str(hq)).stdout)
    paris = next(s for s in summary["sites"] if s["id"] == "M-PARIS")
    assert paris["organs"] == [{"id": H41, "name": NAME}, {"id": "G22", "name": ""}]
    assert all(s["organs"] == [] for s in summary["sites"] if s["id"] != "M-PARIS")
    assert (
        f"organ                 {H41}  {NAME}"
        in valise("directory", "show", "--dir", str(hq)).stdout
    )
    shown = json.loads(valise("site", "show", "M-PARIS", "--json", "--dir", str(hq)).stdout)
    assert shown["organs"] == paris["organs"]
    assert (
        f"organ             {H41}  {NAME}"
        in valise("site", "show", "M-PARIS", "--dir", str(hq)).stdout
    )
    # a new name keeps the organ's place (the first is the one the site speaks as)
    renamed = valise("organ", "add", H41, "--site", "M-PARIS", "--name", "Tỉnh", "--dir", str(hq))
    assert renamed.exit_code == 0, renamed.output
    assert [(o["organ"], o["name"]) for o in organs(hq)] == [(H41, "Tỉnh"), ("G22", "")]
    # move with --move only; the name goes with it
    refused = valise("organ", "add", H41, "--site", "M-HANOI", "--dir", str(hq))
    assert refused.exit_code == 2
    assert f"organ {H41} is served by M-PARIS: --move" in refused.output
    moved = valise("organ", "add", H41, "--site", "M-HANOI", "--move", "--dir", str(hq))
    assert moved.exit_code == 0, moved.output
    assert organs(hq, "--site", "M-HANOI") == [
        {"organ": H41, "site": "M-HANOI", "status": "active", "name": "Tỉnh"}
    ]
    assert [o["organ"] for o in organs(hq, "--site", "M-PARIS")] == ["G22"]
    gone = valise("organ", "remove", "G22", "--dir", str(hq))
    assert gone.exit_code == 0, gone.output
    assert "organ G22 removed (was M-PARIS)" in gone.stdout
    assert [o["organ"] for o in organs(hq)] == [H41]
    # each publish is in the audit log
    audit = json.loads(valise("audit", "list", "--json", "--dir", str(hq)).stdout)
    published = [e for e in audit if e["action"] == "directory.publish" and "organ" in e["detail"]]
    assert [(e["detail"]["organ"], e["detail"]["action"]) for e in published] == [
        (H41, "add"),
        ("G22", "add"),
        (H41, "add"),
        (H41, "add"),
        ("G22", "remove"),
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add", "bad id", "--site", "M-PARIS"], "organ id 'bad id' is not valid: 1 to 64 of"),
        (["add", "x" * 65, "--site", "M-PARIS"], "is not valid"),
        (["add", "G22", "--site", "M-PARIS", "--name", "a\nb"], "holds U+000A"),
        (["add", "G22", "--site", "M-PARIS", "--name", "\u202egnp.exe"], "holds U+202E"),
        (["add", "G22", "--site", "M-PARIS", "--name", "n" * 257], "exceeds the limit of 256"),
        (["add", "G22", "--site", "M-NOWHERE"], "site M-NOWHERE is not in directory"),
        (["add", "M-HANOI", "--site", "M-PARIS"], "is the id of site M-HANOI"),
        (["add", "hq", "--site", "M-PARIS"], "is the id of site HQ"),
        (["add", "g22", "--site", "M-HANOI"], "listed for M-PARIS and M-HANOI (as G22)"),
        (["add", "G22", "--site", "M-HANOI"], "organ G22 is served by M-PARIS: --move"),
        (["remove", "G23"], "no site serves organ G23"),
        (["remove", "g22"], "no site serves organ g22"),
        (["remove", "../x"], "is not valid"),
    ],
)
def test_refusals_publish_nothing(hq: Path, args: list[str], says: str) -> None:
    assert valise("organ", "add", "G22", "--site", "M-PARIS", "--dir", str(hq)).exit_code == 0
    before = held(hq)
    out = valise("organ", *args, "--dir", str(hq))
    assert out.exit_code == 2, out.output
    assert says in out.output
    assert "Traceback" not in out.output
    assert held(hq) == before


def _fill(hq: Path, site: str, organs: tuple[Organ, ...]) -> None:
    def change(d: Directory, now: datetime) -> Directory:
        sites = tuple(replace(e, organs=organs) if e.site == site else e for e in d.sites)
        return Directory(d.serial, d.issued, d.hub, sites)

    publish(hq, change)


def test_too_many_organs_and_too_large_a_directory_publish_nothing(hq: Path) -> None:
    _fill(hq, "M-PARIS", tuple(Organ(f"P{i}") for i in range(MAX_ORGANS_PER_SITE)))
    before = held(hq)
    out = valise("organ", "add", "P-LAST", "--site", "M-PARIS", "--dir", str(hq))
    assert out.exit_code == 2, out.output
    assert "M-PARIS lists 1001 organs, over the limit of 1000; nothing published" in out.output
    assert held(hq) == before
    # Long names on two sites: as many as fit under MAX_DIRECTORY_BYTES, then one more.
    long = "ệ" * MAX_ORGAN_NAME_CHARS
    per_organ = len(f'<organ id="H000">{long}</organ>'.encode())
    _fill(hq, "M-PARIS", tuple(Organ(f"P{i}", long) for i in range(MAX_ORGANS_PER_SITE)))
    hanoi: tuple[Organ, ...] = ()
    slack = 8  # a serial that gains a digit while filling
    while MAX_DIRECTORY_BYTES - len(held(hq)) >= per_organ + slack:
        more = (MAX_DIRECTORY_BYTES - len(held(hq)) - slack) // per_organ
        hanoi += tuple(Organ(f"H{len(hanoi) + i:03d}", long) for i in range(more))
        _fill(hq, "M-HANOI", hanoi)
    before = held(hq)
    out = valise(
        "organ", "add", "H-ONE-TOO-MANY", "--site", "M-HANOI", "--name", long, "--dir", str(hq)
    )
    assert out.exit_code == 2, out.output
    assert "over the limit" in out.output and "not published" in out.output
    assert held(hq) == before


def test_a_mission_lists_organs_but_cannot_publish_them(tmp_path: Path) -> None:
    """Live: HQ adds and removes an organ; the running mission has each change after
    its next directory fetch (a running HQ serves it from its next key check)."""
    with Network(tmp_path, ("M-PARIS",), configure=drill_config) as net:
        hq, paris = net.sites["HQ"].directory, net.sites["M-PARIS"].directory
        assert organs(paris) == []
        refused = valise("organ", "add", H41, "--site", "M-PARIS", "--dir", str(paris))
        assert refused.exit_code == 2 and "runs at HQ" in refused.output
        added = valise("organ", "add", H41, "--site", "M-PARIS", "--name", NAME, "--dir", str(hq))
        assert added.exit_code == 0, added.output
        want = [{"organ": H41, "site": "M-PARIS", "status": "active", "name": NAME}]
        poll("M-PARIS holds the organ", lambda: organs(paris) == want)
        assert serial(paris) == serial(hq)
        assert valise("organ", "remove", H41, "--dir", str(hq)).exit_code == 0
        poll("M-PARIS sees it removed", lambda: organs(paris) == [])


def test_site_add_refuses_an_organ_id_before_any_token_is_made(hq: Path, tmp_path: Path) -> None:
    assert valise("organ", "add", "m-rome", "--site", "M-PARIS", "--dir", str(hq)).exit_code == 0
    bundle = tmp_path / "rome.bundle"
    out = valise(
        "site", "add", "M-ROME", "--endpoint", "https://127.0.0.1:9", "--out", str(bundle),
        "--dir", str(hq),
    )  # fmt: skip
    assert out.exit_code != 0
    assert "M-ROME is organ m-rome of the directory" in out.output
    assert not bundle.exists()
