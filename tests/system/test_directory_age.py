"""A mission knows how old its directory is (issue 9).

Fresh means fetched from HQ and verified, not merely a new serial. After
``[relay] directory_max_age_seconds`` without a fresh directory, /readyz fails with the
reason, the metric shows the age, doctor fails, every CLI command warns on stderr, and
mail is still queued (sending must not stop).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.demo.network import Network
from gateway.site.context import load_site
from tests.system.test_relay import FAST, _send

MAX_AGE = "2"
WAIT_S = 30.0


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _age(port: int) -> float:
    _, text = _get(port, "/metrics")
    m = re.search(r"^valise_directory_age_seconds ([0-9.e+]+)$", text, re.MULTILINE)
    assert m is not None, "no valise_directory_age_seconds"
    return float(m.group(1))


def _valise(*args: str) -> subprocess.CompletedProcess[str]:
    # The operator's commands see the same limit as the gateway.
    env = {**os.environ, "VALISE_RELAY_DIRECTORY_MAX_AGE_SECONDS": MAX_AGE}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


async def _history(site_dir: Path, message_id: str) -> list[object]:
    ctx = await load_site(site_dir)
    try:
        return list(await ctx.store.history(message_id))
    finally:
        await ctx.store.close()


def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_mission_cut_off_from_hq_says_so_and_keeps_queueing(tmp_path: Path) -> None:
    env = {"M-PARIS": {"VALISE_RELAY_DIRECTORY_MAX_AGE_SECONDS": MAX_AGE}}
    with Network(tmp_path, ("M-PARIS",), env=FAST, site_env=env) as net:
        paris = net.sites["M-PARIS"]
        # Fetching every second: ready, and the age stays small.
        _until(lambda: _get(paris.ops_port, "/readyz")[0] == 200, "readyz 200")

        net.sites["HQ"].stop()
        _until(lambda: _get(paris.ops_port, "/readyz")[0] == 503, "readyz 503")
        status, body = _get(paris.ops_port, "/readyz")
        assert status == 503
        ready = json.loads(body)
        assert not ready["ready"]
        assert "not fetched from HQ" in ready["checks"]["directory_fetch"]
        assert ready["checks"]["store"] == "ok"

        first = _age(paris.ops_port)
        assert first > float(MAX_AGE)
        _until(lambda: _age(paris.ops_port) > first, "the age metric to rise")

        doctor = _valise("doctor", "--dir", str(paris.directory), "--json")
        assert doctor.returncode != 0
        rows = {r["check"]: r for r in json.loads(doctor.stdout)}
        assert rows["directory fetch"]["status"] == "fail"
        assert "not fetched from HQ" in rows["directory fetch"]["detail"]

        listed = _valise("site", "list", "--dir", str(paris.directory))
        assert listed.returncode == 0
        warning = [line for line in listed.stderr.splitlines() if "not fetched from HQ" in line]
        assert warning and warning[0].startswith("valise: warning:")

        # Mail must not stop: a document is still accepted and queued for HQ.
        (mid,) = asyncio.run(_send(net, "M-PARIS", "HQ", 1, "cut-off"))
        assert asyncio.run(_history(paris.directory, mid)), "the document was not queued"
