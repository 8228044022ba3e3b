"""Every exit code docs/CLI.md documents is the one the command returns, in its main
cases (issue 10: "exit codes are documented per command").

The test reads the table in docs/CLI.md: every `valise` command must have a row; for
every (command, code) in a row there is a case below that runs the command in this
process (click's CliRunner), with no network, and returns that code, or an entry in
ELSEWHERE naming the test that covers it with a network. A case whose code is not in
its command's row fails too, so the table cannot drift from the code either way.

Sites: an HQ folder with no process running and missions that exist only in its
directory (tests/support/offline_hq.py); offline key folders for seal/open.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from config.site import load_site_config, render_site_config
from gateway.bridges.mail.delivery import deliver_locally
from gateway.cli.main import main
from gateway.demo.network import SiteProcess, free_port
from gateway.relay.local_delivery import LocalDelivery
from gateway.runtime.events import EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import load_site
from gateway.trust.enroll import init_hub
from routing.directory import KeyState
from tests.support.offline_hq import add_mission, make_hq, set_encryption_keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
STORE_DOWN = {
    "VALISE_STORE_BACKEND": "postgres",
    "VALISE_STORE_DSN": "postgresql://postgres@127.0.0.1:1/none",  # nothing listens on 1
}
UNKNOWN_ID = "0190c0de-0000-7000-8000-000000000000"
PASSPHRASE = "correct horse battery staple"

# (command, code) pairs that need a running network or a history no offline site has;
# the test named covers them.
ELSEWHERE = {
    ("join", 0): "needs HQ serving /v1/enroll: every Network test joins (gateway/demo/network.py)",
    ("serve", 0): "test_serve_stops_with_0_on_sigterm below (a process on a free port)",
    ("audit witness", 0): "needs a mission's checkpoint: tests/system/test_audit_witness.py",
    ("audit witness", 1): "a forked chain: tests/system/test_audit_witness.py",
    ("evidence export", 1): "a store holding a forgery: tests/system/test_evidence.py",
    ("timestamp export", 0): "needs HQ's TSA tokens: tests/system/test_timestamping.py",
}


def documented() -> dict[str, set[int]]:
    """docs/CLI.md's table: command (without "valise ") -> its exit codes."""
    rows = re.findall(r"^\| `valise ([a-z ]+)` \| (.+) \|$", DOC.read_text(), re.M)
    assert rows, "no command table in docs/CLI.md"
    return {cmd: {int(c) for c in re.findall(r"(?:^|·)\s*(\d+)\b", cell)} for cmd, cell in rows}


def registered() -> set[str]:
    found: set[str] = set()

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found.add(" ".join(path))

    walk(main, [])
    return found


@dataclass
class World:
    root: Path
    hq: Path  # HQ, with paper missions M-HANOI (keyed) and M-WAIT (no active key)
    keys_hq: Path
    keys_paris: Path
    envelope: Path  # sealed by keys_hq for M-PARIS
    note: Path
    nosite: Path  # an empty folder: not a site
    delivered: str  # a document delivered to HQ's inbox
    bundle: Path  # its evidence bundle
    names: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def fresh(self, stem: str = "x") -> Path:
        return self.root / f"{stem}-{next(self.names)}"

    def send(self, to: str = "M-HANOI") -> str:
        out = run(["send", "--to", to, str(self.note), "--dir", str(self.hq)])
        assert out.exit_code == 0, out.output
        return out.stdout.strip()

    def new_hq(self) -> Path:
        """An HQ of its own, for cases that change keys or the audit log."""
        folder = self.fresh("hq")
        folder.mkdir()
        return make_hq(folder)


def run(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner(env=env).invoke(main, args)


async def _deliver_here(hq: Path) -> None:
    """What a running HQ's local delivery does with what arrived for it: once."""
    ctx = await load_site(hq)
    try:
        delivery = LocalDelivery(
            ctx,
            poke=lambda peers: None,
            inbound=asyncio.Event(),
            metrics=Metrics(),
            events=EventBus(),
            crash=lambda point: None,
            hand_off=deliver_locally,
        )
        assert await delivery.once()
    finally:
        await ctx.store.close()


async def _fail_delivery(hq: Path, mid: str) -> None:
    ctx = await load_site(hq)
    try:
        await ctx.store.fail(mid, None, reason="refused by the peer", now=datetime.now(UTC))
    finally:
        await ctx.store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("cli")
    hq = make_hq(root)
    add_mission(hq, "M-HANOI")
    waiting = add_mission(hq, "M-WAIT")
    set_encryption_keys(hq, "M-WAIT", ((waiting.decryption, KeyState.REVOKED),))
    note = root / "note.txt"
    note.write_text("Note verbale\n")
    keys_hq, keys_paris = root / "k-hq", root / "k-paris"
    for site, folder in (("HQ", keys_hq), ("M-PARIS", keys_paris)):
        assert run(["keys", "generate", "--site", site, "--dir", str(folder)]).exit_code == 0
    envelope = root / "e.valise"
    sealed = run(
        [
            "seal",
            "--keys",
            str(keys_hq),
            "--to",
            str(keys_paris / "M-PARIS.pub.xml"),
            "--in",
            str(note),
            "--out",
            str(envelope),
        ]
    )
    assert sealed.exit_code == 0, sealed.output
    nosite = root / "not-a-site"
    nosite.mkdir()
    w = World(root, hq, keys_hq, keys_paris, envelope, note, nosite, "", root / "bundle")
    w.delivered = w.send("HQ")
    asyncio.run(_deliver_here(hq))
    exported = run(["evidence", "export", w.delivered, "--out", str(w.bundle), "--dir", str(hq)])
    assert exported.exit_code == 0, exported.output
    return w


Args = Callable[[World], list[str]]


def _site(*args: str) -> Args:
    return lambda w: [*args, "--dir", str(w.hq)]


# The 0 case of every command that acts on a site (--dir last): also the base of the
# generic "not a site folder" (3) and "store unavailable" (75) cases.
SITE_BASE: dict[str, Args] = {
    "site add": lambda w: (
        [
            "site",
            "add",
            "M-NEW",
            "--endpoint",
            "https://127.0.0.1:2",
            "--out",
            str(w.fresh("bundle")),
            "--dir",
            str(w.hq),
        ]
    ),
    "site list": _site("site", "list"),
    "site show": _site("site", "show", "HQ"),
    "directory show": _site("directory", "show", "--json"),
    "directory status": _site("directory", "status"),
    "organ add": lambda w: _organ_add(w, f"000.00.{next(w.names):02d}.H41"),
    "organ remove": lambda w: ["organ", "remove", _organ_added(w), "--dir", str(w.hq)],
    "organ list": _site("organ", "list", "--json"),
    "serve": lambda w: ["serve", "--dir", str(w.hq)],  # its 0 is not run here
    "send": lambda w: ["send", "--to", "M-HANOI", str(w.note), "--dir", str(w.hq)],
    "status": lambda w: ["status", w.delivered, "--dir", str(w.hq)],
    "inbox list": _site("inbox", "list"),
    "inbox get": lambda w: (
        ["inbox", "get", w.delivered, "--out-dir", str(w.fresh("got")), "--dir", str(w.hq)]
    ),
    "inbox ack": lambda w: ["inbox", "ack", w.delivered, "--dir", str(w.hq)],
    "queue list": _site("queue", "list"),
    "queue show": lambda w: ["queue", "show", w.send(), "--dir", str(w.hq)],
    "queue hold": lambda w: ["queue", "hold", w.send(), "--dir", str(w.hq)],
    "queue release": lambda w: _held(w),
    "queue retry": lambda w: _failed(w),
    "queue delete": lambda w: ["queue", "delete", w.send(), "--yes", "--dir", str(w.hq)],
    "queue reseal": _site("queue", "reseal", "--all"),
    "queue shape": _site("queue", "shape"),
    "keys list": _site("keys", "list"),
    "keys rotate": _site("keys", "rotate", "--kind", "signing", "--dry-run"),
    "keys activate": lambda w: ["keys", "activate", _active(w.hq, "signing"), "--dir", str(w.hq)],
    "keys retire": lambda w: _retiring(w),
    "keys revoke": lambda w: _revoke_paper_key(w),
    "keys encrypt": lambda w: ["keys", "encrypt", "--dir", str(w.new_hq())],
    "integrator add": lambda w: ["integrator", "add", f"app{next(w.names)}", "--dir", str(w.hq)],
    "integrator list": _site("integrator", "list"),
    "integrator revoke": lambda w: _integrator_then_revoke(w),
    "audit verify": _site("audit", "verify"),
    "audit list": _site("audit", "list"),
    "audit checkpoint": _site("audit", "checkpoint"),
    "audit witness": _site("audit", "witness", "M-HANOI"),
    "doctor": lambda w: ["doctor", "--dir", str(w.new_hq())],
    "evidence export": lambda w: (
        ["evidence", "export", w.delivered, "--out", str(w.fresh("ev")), "--dir", str(w.hq)]
    ),
    "timestamp list": lambda w: ["timestamp", "list", w.delivered, "--dir", str(w.hq)],
    "timestamp export": lambda w: (
        ["timestamp", "export", w.delivered, "--out", str(w.fresh("ts")), "--dir", str(w.hq)]
    ),
}
ENV: dict[str, dict[str, str]] = {"keys encrypt": {"VALISE_KEY_PASSPHRASE": PASSPHRASE}}


def _active(hq: Path, kind: str) -> str:
    import json

    rows = json.loads(run(["keys", "list", "--json", "--dir", str(hq)]).stdout)
    return next(r["id"] for r in rows if r["kind"] == kind and r["state"] == "active")[:12]


def _organ_add(w: World, organ_id: str, site: str = "M-HANOI", hq: Path | None = None) -> list[str]:
    return ["organ", "add", organ_id, "--site", site, "--dir", str(hq or w.hq)]


def _organ_added(w: World) -> str:
    """A new organ id that M-HANOI serves (published at HQ)."""
    organ_id = f"G{next(w.names)}"
    out = run(_organ_add(w, organ_id))
    assert out.exit_code == 0, out.output
    return organ_id


def _held(w: World) -> list[str]:
    mid = w.send()
    assert run(["queue", "hold", mid, "--dir", str(w.hq)]).exit_code == 0
    return ["queue", "release", mid, "--dir", str(w.hq)]


def _failed(w: World) -> list[str]:
    mid = w.send()
    asyncio.run(_fail_delivery(w.hq, mid))
    return ["queue", "retry", mid, "--dir", str(w.hq)]


def _retiring(w: World) -> list[str]:
    """A new HQ whose signing key was rotated: the old one is retiring."""
    hq = w.new_hq()
    old = _active(hq, "signing")
    assert run(["keys", "rotate", "--kind", "signing", "--dir", str(hq)]).exit_code == 0
    import json

    rows = json.loads(run(["keys", "list", "--json", "--dir", str(hq)]).stdout)
    pending = [r["id"] for r in rows if r["kind"] == "signing" and r["state"] == "next"]
    for key_id in pending:  # announced, not active yet: activate it by hand
        assert run(["keys", "activate", key_id, "--dir", str(hq)]).exit_code == 0
    return ["keys", "retire", old, "--dir", str(hq)]


def _revoke_paper_key(w: World) -> list[str]:
    m = add_mission(w.hq, f"M-R{next(w.names)}")
    return ["keys", "revoke", m.decryption.key_id[:8], "--reason", "lost", "--dir", str(w.hq)]


def _integrator_then_revoke(w: World) -> list[str]:
    name = f"gone{next(w.names)}"
    assert run(["integrator", "add", name, "--dir", str(w.hq)]).exit_code == 0
    return ["integrator", "revoke", name, "--dir", str(w.hq)]


def _mission_shaped(w: World) -> Path:
    """HQ's folder relabelled as a mission (role and id in valise.toml): enough for a
    command that checks where it runs."""
    folder = w.fresh("mission")
    shutil.copytree(w.hq, folder)
    c = load_site_config(folder)
    site = replace(c.site, role="mission", id="M-HANOI", hub="HQ", hub_endpoint="https://h:1")
    (folder / "valise.toml").write_text(render_site_config(replace(c, site=site)))
    return folder


def _revoke_at_a_mission(w: World) -> list[str]:
    """A mission revoking another site's key: resolved, then refused (HQ's alone)."""
    other = add_mission(w.hq, f"M-O{next(w.names)}")
    folder = _mission_shaped(w)
    return ["keys", "revoke", other.decryption.key_id[:10], "--reason", "x", "--dir", str(folder)]


def _join_into_a_file(w: World) -> list[str]:
    bundle = w.fresh("bundle")
    added = run(
        [
            "site",
            "add",
            f"M-J{next(w.names)}",
            "--endpoint",
            "https://127.0.0.1:2",
            "--out",
            str(bundle),
            "--dir",
            str(w.hq),
        ]
    )
    assert added.exit_code == 0, added.output
    return ["join", str(bundle), "--dir", str(w.note / "x"), "--listen", "127.0.0.1:1"]


def _tampered_audit(w: World) -> list[str]:
    hq = w.new_hq()
    for _ in range(3):  # entries to tamper with: each command is recorded
        assert run(["site", "list", "--dir", str(hq)]).exit_code == 0
    with sqlite3.connect(hq / "store.sqlite") as conn:
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1")
    return ["audit", "verify", "--dir", str(hq)]


def _tampered_bundle(w: World) -> list[str]:
    copy = w.fresh("bundle")
    shutil.copytree(w.bundle, copy)
    victim = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.suffix != ".json")
    victim.write_bytes(victim.read_bytes() + b"\x00")
    return ["evidence", "verify", str(copy)]


def _encrypted_then_wrong(w: World) -> tuple[list[str], dict[str, str]]:
    hq = w.new_hq()
    done = run(["keys", "encrypt", "--dir", str(hq)], env={"VALISE_KEY_PASSPHRASE": PASSPHRASE})
    assert done.exit_code == 0, done.output
    return ["keys", "encrypt", "--dir", str(hq)], {"VALISE_KEY_PASSPHRASE": "wrong"}


def _seal(w: World, *extra: str, to: Path | None = None, out: Path | None = None) -> list[str]:
    return [
        "seal",
        "--keys",
        str(w.keys_hq),
        "--to",
        str(to or w.keys_paris / "M-PARIS.pub.xml"),
        "--in",
        str(w.note),
        "--out",
        str(out or w.fresh("sealed")),
        *extra,
    ]


def _open(w: World, keys: Path, origin: Path, envelope: Path | None = None) -> list[str]:
    return [
        "open",
        "--keys",
        str(keys),
        "--from",
        str(origin),
        "--in",
        str(envelope or w.envelope),
        "--out-dir",
        str(w.fresh("opened")),
    ]


Case = Callable[[World], "list[str] | tuple[list[str], dict[str, str]]"]

# The specific main cases, (command, code, how), beside the generic ones built from
# SITE_BASE (0, and 3 / 75 where the row documents them).
SPECIFIC: list[tuple[str, int, Case]] = [
    ("keys generate", 0, lambda w: ["keys", "generate", "--site", "M-X", "--dir", str(w.fresh())]),
    (
        "keys generate",
        2,
        lambda w: ["keys", "generate", "--site", "paris", "--dir", str(w.fresh())],
    ),
    ("keys generate", 3, lambda w: ["keys", "generate", "--site", "HQ", "--dir", str(w.keys_hq)]),
    ("seal", 0, lambda w: _seal(w)),
    ("seal", 1, lambda w: _seal(w, to=w.note)),
    ("seal", 2, lambda w: _seal(w, "--class", "Not A Class!")),
    ("seal", 3, lambda w: _seal(w, out=w.envelope)),
    ("open", 0, lambda w: _open(w, w.keys_paris, w.keys_hq / "HQ.pub.xml")),
    ("open", 1, lambda w: _open(w, w.keys_paris, w.keys_paris / "M-PARIS.pub.xml")),
    ("open", 1, lambda w: _open(w, w.keys_hq, w.keys_hq / "HQ.pub.xml")),
    ("open", 2, lambda w: _open(w, w.keys_paris, w.keys_hq / "HQ.pub.xml")[:-2]),
    ("open", 3, lambda w: _open(w, w.nosite, w.keys_hq / "HQ.pub.xml")),
    ("inspect", 0, lambda w: ["inspect", str(w.envelope)]),
    ("inspect", 1, lambda w: ["inspect", str(w.note)]),
    ("inspect", 2, lambda w: ["inspect", str(w.fresh("missing"))]),
    (
        "init",
        0,
        lambda w: ["init", "--site", "HQ", "--dir", str(w.fresh()), "--listen", "127.0.0.1:1"],
    ),
    (
        "init",
        2,
        lambda w: ["init", "--site", "hq", "--dir", str(w.fresh()), "--listen", "127.0.0.1:1"],
    ),
    ("init", 2, lambda w: ["init", "--site", "HQ", "--dir", str(w.hq), "--listen", "127.0.0.1:1"]),
    (
        "init",
        3,
        lambda w: ["init", "--site", "HQ", "--dir", str(w.note / "x"), "--listen", "127.0.0.1:1"],
    ),
    (
        "site add",
        2,
        lambda w: (
            [
                "site",
                "add",
                "dakar",
                "--endpoint",
                "https://127.0.0.1:2",
                "--out",
                str(w.fresh()),
                "--dir",
                str(w.hq),
            ]
        ),
    ),
    ("site show", 2, _site("site", "show", "M-NOWHERE")),
    ("directory show", 2, _site("directory", "show", "--json", "--xml")),
    (
        "join",
        2,
        lambda w: ["join", str(w.note), "--dir", str(w.fresh()), "--listen", "127.0.0.1:1"],
    ),
    ("directory status", 2, lambda w: ["directory", "status", "--dir", str(_mission_shaped(w))]),
    ("keys revoke", 2, _revoke_at_a_mission),
    ("organ add", 0, lambda w: _organ_add(w, _organ_added(w))),  # served already: 0
    ("organ add", 2, lambda w: _organ_add(w, "bad id")),
    ("organ add", 2, lambda w: _organ_add(w, "G9", site="M-NOWHERE")),
    ("organ add", 2, lambda w: _organ_add(w, "m-hanoi")),  # a site id
    ("organ add", 2, lambda w: _organ_add(w, _organ_added(w), site="HQ")),  # M-HANOI's
    ("organ add", 2, lambda w: _organ_add(w, "G9", hq=_mission_shaped(w))),
    ("organ remove", 2, _site("organ", "remove", "000.99.99.Z99")),
    ("organ remove", 2, lambda w: ["organ", "remove", "G9", "--dir", str(_mission_shaped(w))]),
    ("organ list", 2, _site("organ", "list", "--site", "M-NOWHERE")),
    ("join", 3, _join_into_a_file),
    ("send", 0, lambda w: ["send", "--to", "M-WAIT", str(w.note), "--dir", str(w.hq)]),
    ("send", 2, lambda w: ["send", "--to", "M-NOWHERE", str(w.note), "--dir", str(w.hq)]),
    ("send", 2, lambda w: ["send", "--to", "M-HANOI", str(w.fresh()), "--dir", str(w.hq)]),
    ("status", 2, _site("status", UNKNOWN_ID)),
    (
        "inbox get",
        2,
        lambda w: ["inbox", "get", UNKNOWN_ID, "--out-dir", str(w.fresh()), "--dir", str(w.hq)],
    ),
    (
        "inbox get",
        3,
        lambda w: ["inbox", "get", w.delivered, "--out-dir", str(w.root), "--dir", str(w.hq)],
    ),
    ("inbox ack", 2, _site("inbox", "ack", UNKNOWN_ID)),
    ("inbox ack", 2, _site("inbox", "ack", "../keys")),
    ("queue show", 2, _site("queue", "show", UNKNOWN_ID)),
    ("queue hold", 2, _site("queue", "hold", UNKNOWN_ID)),
    ("queue release", 2, _site("queue", "release", UNKNOWN_ID)),
    ("queue release", 2, lambda w: ["queue", "release", w.send("M-WAIT"), "--dir", str(w.hq)]),
    ("queue retry", 2, lambda w: ["queue", "retry", w.send(), "--dir", str(w.hq)]),
    ("queue delete", 2, lambda w: ["queue", "delete", w.send(), "--dir", str(w.hq)]),
    ("queue reseal", 2, _site("queue", "reseal")),
    ("queue reseal", 2, _site("queue", "reseal", UNKNOWN_ID)),
    ("keys rotate", 2, _site("keys", "rotate", "--kind", "signing", "--overlap", "soon")),
    ("keys activate", 2, _site("keys", "activate", "abcdef12")),
    (
        "keys retire",
        2,
        lambda w: ["keys", "retire", _active(w.hq, "encryption"), "--dir", str(w.hq)],
    ),
    ("keys revoke", 2, _site("keys", "revoke", "ab", "--reason", "x")),
    ("keys revoke", 2, _site("keys", "revoke", "0" * 32, "--reason", "x")),
    ("keys encrypt", 2, lambda w: ["keys", "encrypt", "--dir", str(w.hq)]),
    ("keys encrypt", 3, _encrypted_then_wrong),
    ("integrator add", 2, _site("integrator", "add", "Not A Name")),
    ("integrator revoke", 2, _site("integrator", "revoke", "ghost")),
    ("audit verify", 1, _tampered_audit),
    ("audit witness", 2, _site("audit", "witness", "M-HANOI")),
    ("doctor", 1, lambda w: (["doctor", "--dir", str(w.hq)], STORE_DOWN)),
    ("evidence export", 2, _site("evidence", "export", UNKNOWN_ID, "--out", "/nonexistent/x")),
    (
        "evidence export",
        3,
        lambda w: (["evidence", "export", w.delivered, "--out", str(w.bundle), "--dir", str(w.hq)]),
    ),
    ("evidence verify", 0, lambda w: ["evidence", "verify", str(w.bundle)]),
    ("evidence verify", 1, _tampered_bundle),
    ("evidence verify", 2, lambda w: ["evidence", "verify", str(w.bundle), "--trust", str(w.note)]),
    ("evidence verify", 3, lambda w: ["evidence", "verify", str(w.fresh("none"))]),
    (
        "timestamp export",
        2,
        lambda w: ["timestamp", "export", w.send(), "--out", str(w.fresh()), "--dir", str(w.hq)],
    ),
]

# SITE_BASE cases whose 0 is not run here (see ELSEWHERE), or runs only with
# SITE_BASE's own setup (serve would run until stopped).
NO_BASE_ZERO = {"serve", "directory status", "audit witness", "timestamp export"}


def _generic() -> list[tuple[str, int, Case]]:
    doc = documented()
    cases: list[tuple[str, int, Case]] = []
    for command, base in SITE_BASE.items():
        codes = doc.get(command, set())
        env = ENV.get(command, {})
        if command not in NO_BASE_ZERO:
            cases.append((command, 0, lambda w, b=base, e=env: (b(w), e)))
        if 3 in codes:
            cases.append((command, 3, lambda w, b=base, e=env: (_elsewhere(b(w), w.nosite), e)))
        if 75 in codes:
            cases.append((command, 75, lambda w, b=base: (b(w), STORE_DOWN)))
    return cases


def _elsewhere(args: list[str], folder: Path) -> list[str]:
    """``args`` with its --dir (the last option) pointing at ``folder``."""
    i = len(args) - 1 - args[::-1].index("--dir")
    return [*args[:i], "--dir", str(folder), *args[i + 2 :]]


CASES = SPECIFIC + _generic()
# directory status's 0 runs at HQ (its 2 needs a mission: ELSEWHERE).
CASES.append(("directory status", 0, _site("directory", "status")))


def test_every_command_has_a_row_and_every_row_a_command() -> None:
    assert set(documented()) == registered()


def test_every_documented_code_has_a_case_here_or_is_covered_elsewhere() -> None:
    covered = {(command, code) for command, code, _ in CASES} | set(ELSEWHERE)
    missing = [
        (command, code)
        for command, codes in documented().items()
        for code in sorted(codes)
        if (command, code) not in covered
    ]
    assert missing == []
    stale = [pair for pair in ELSEWHERE if pair[1] not in documented().get(pair[0], set())]
    assert stale == []


@pytest.mark.parametrize(
    ("command", "code", "case"),
    CASES,
    ids=[f"{command}-{code}-{i}" for i, (command, code, _) in enumerate(CASES)],
)
def test_the_documented_code_is_returned(world: World, command: str, code: int, case: Case) -> None:
    assert code in documented()[command], f"{code} is not documented for valise {command}"
    made = case(world)
    args, env = made if isinstance(made, tuple) else (made, {})
    assert " ".join(args).startswith(command), args
    out = run(args, env)
    assert out.exit_code == code, f"valise {' '.join(args)}: {out.output}"
    if code != 0:  # it says why (a report on stdout, or one line on stderr)
        assert out.output.strip()
        assert "Traceback" not in out.output


def test_serve_stops_with_0_on_sigterm(tmp_path: Path) -> None:
    site = SiteProcess("HQ", tmp_path / "HQ", free_port(), tmp_path / "HQ.log")
    init_hub(site.directory, site="HQ", listen=f"127.0.0.1:{site.port}")
    site.start()
    assert site.proc is not None
    site.stop()
    assert site.proc.returncode == 0, site.log.read_text()
