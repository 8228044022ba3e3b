"""kill -9 of the origin gateway while a bridge is taking messages: every message that
was acknowledged is delivered exactly once, and nothing is delivered more often than
the client tried to send it.

The SMTP part: 100 messages from M-PARIS to M-HANOI (Maildir), M-PARIS SIGKILLed
twice while they are being submitted, by a client that retries whatever got no 250.
The HTTP part: 100 documents with an Idempotency-Key each, same kills, same checks
(200 in all over the two bridges).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

from gateway.bridges.mail.maildir import delivered_keys
from gateway.demo.network import Network
from gateway.site.context import load_site
from tests.support.bridge_load import Outcome, SmtpSender, in_background
from tests.support.smtp import add_integrator
from tests.system.test_relay import FAST

MESSAGES = 100
KILL_AFTER = (20, 55)  # acknowledged messages before each kill
SENDER = "alice@m-paris.valise.local"
RECIPIENT = "registry@m-hanoi.valise.local"
CLIENT_ID = re.compile(rb"^Message-ID: <crash-(\d+)@test>\r$", re.MULTILINE)


def message(i: int) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: crash {i}\r\n"
        f"Message-ID: <crash-{i}@test>\r\n\r\nmessage {i}\r\n"
    ).encode()


def wait_count(outcome: Outcome, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(outcome.acked) < n:
        assert time.monotonic() < deadline, f"only {len(outcome.acked)} acknowledged"
        time.sleep(0.01)


def maildir_ids(site_dir: Path) -> list[str]:
    return delivered_keys(site_dir / "maildir" / "registry")


async def received_counts(site_dir: Path, ids: list[str]) -> dict[str, int]:
    ctx = await load_site(site_dir)
    try:
        return {
            mid: sum(t.state == "received" for t in await ctx.store.history(mid)) for mid in ids
        }
    finally:
        await ctx.store.close()


def check_exactly_once(hanoi: Path, outcome: Outcome, timeout: float = 90.0) -> None:
    acked = outcome.acked_ids
    assert len(acked) == len(set(acked)) == MESSAGES  # one envelope per message here
    deadline = time.monotonic() + timeout
    while not set(acked) <= set(maildir_ids(hanoi)):
        assert time.monotonic() < deadline, "acknowledged messages not delivered"
        time.sleep(0.2)
    time.sleep(2)  # let stragglers (unacknowledged copies) land before counting
    delivered = maildir_ids(hanoi)
    assert len(delivered) == len(set(delivered)), "a message id was delivered twice"
    inbox = sorted(p.name for p in (hanoi / "inbox").iterdir() if not p.name.startswith("."))
    assert inbox == sorted(delivered), "the Maildir and the HTTP inbox disagree"
    counts = asyncio.run(received_counts(hanoi, delivered))
    assert set(counts.values()) == {1}, {m: c for m, c in counts.items() if c != 1}
    # By the client's own Message-ID: each message at least once if acknowledged,
    # never more often than it was sent.
    copies: Counter[int] = Counter()
    box = hanoi / "maildir" / "registry"
    for path in [*(box / "new").iterdir(), *(box / "cur").iterdir()]:
        m = CLIENT_ID.search(path.read_bytes())
        assert m is not None
        copies[int(m[1])] += 1
    for i in range(MESSAGES):
        assert 1 <= copies[i] <= outcome.attempts[i], (i, copies[i], outcome.attempts[i])


def test_kill_9_during_smtp_submissions(tmp_path: Path) -> None:
    env = FAST
    site_env = {"M-HANOI": {"VALISE_DELIVERY_MODE": "maildir"}}
    with Network(tmp_path, env=env, site_env=site_env) as net:
        paris = net.sites["M-PARIS"]
        login = ("alice", add_integrator(paris.directory, "alice"))  # it sends as SENDER
        send = SmtpSender(lambda: paris.ports["smtp"], SENDER, [RECIPIENT], message, login)
        outcome, submitter = in_background(send, MESSAGES)
        try:
            for n in KILL_AFTER:
                wait_count(outcome, n)
                paris.kill()
                assert paris.proc is not None and paris.proc.returncode == -9
                time.sleep(0.3)
                paris.start()
            submitter.join(timeout=120)
            assert not submitter.is_alive(), outcome.failures[-5:]
        finally:
            send.close()
        assert len(outcome.acked) == MESSAGES, outcome.failures[-5:]
        assert outcome.failures, "the kills never interrupted a submission"
        check_exactly_once(net.sites["M-HANOI"].directory, outcome)


def test_kill_9_during_http_submissions(tmp_path: Path) -> None:
    """The HTTP part: 100 documents submitted to M-PARIS's API with an Idempotency-Key
    each, by a client that retries whatever got no 202; M-PARIS SIGKILLed twice."""
    import json
    import subprocess
    import sys
    import urllib.request

    with Network(tmp_path, env=FAST) as net:
        paris, hanoi = net.sites["M-PARIS"], net.sites["M-HANOI"]
        token = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "integrator",
                "add",
                "crash-dms",
                "--dir",
                str(paris.directory),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0]

        def send(i: int) -> list[str]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{paris.ports['http']}/v1/documents",
                data=f"document {i}\n".encode(),
                method="POST",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "text/plain",
                    "Valise-To": "M-HANOI",
                    "Valise-Filename": f"doc-{i}.txt",
                    "Idempotency-Key": f"crash-{i}",
                },
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 202
                return [json.loads(r.read())["id"]]

        outcome, submitter = in_background(send, MESSAGES)
        for n in KILL_AFTER:
            wait_count(outcome, n)
            paris.kill()
            time.sleep(0.3)
            paris.start()
        submitter.join(timeout=120)
        assert not submitter.is_alive(), outcome.failures[-5:]
        assert len(outcome.acked) == MESSAGES, outcome.failures[-5:]
        assert outcome.failures, "the kills never interrupted a submission"
        acked = outcome.acked_ids
        assert len(set(acked)) == MESSAGES  # a retried key never became a second message
        inbox = hanoi.directory / "inbox"
        deadline = time.monotonic() + 90

        def arrived() -> set[str]:
            return {p.name for p in inbox.iterdir()} if inbox.exists() else set()

        while not set(acked) <= arrived():
            assert time.monotonic() < deadline, "acknowledged documents not delivered"
            time.sleep(0.2)
        time.sleep(2)
        delivered = sorted(p.name for p in inbox.iterdir() if not p.name.startswith("."))
        assert delivered == sorted(acked), "a document was lost or delivered twice"
        counts = asyncio.run(received_counts(hanoi.directory, delivered))
        assert set(counts.values()) == {1}
