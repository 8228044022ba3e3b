"""``valise doctor``: the check functions at their thresholds, and the command against a
real network on loopback (HQ and one mission, as processes, stopped at teardown)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from crypto.x509 import (
    SITE_DAYS,
    SiteCA,
    certificate_not_after,
    issue_site_certificate,
    site_public_key,
)
from gateway.demo.network import Network, free_port
from gateway.service.doctor_checks import (
    CLOCK_SKEW_FAIL_S,
    CLOCK_SKEW_WARN_S,
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    Check,
    Status,
    ca_issuing_check,
    clock_skew_check,
    directory_check,
    disk_check,
    expiry_check,
    hq_reachable_check,
    key_mode_check,
    store_durability_checks,
)
from gateway.site.keyring import generate_key, load_ring, save_ring
from gateway.store.sqlite import SqliteStore
from tests.support.cli import valise
from tests.system.test_relay import FAST

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GIB = 1024**3


def doctor_json(
    directory: Path, env: dict[str, str] | None = None
) -> tuple[int, dict[str, dict[str, str]]]:
    done = valise("doctor", "--dir", str(directory), "--json", env=env)
    rows = json.loads(done.stdout)
    assert isinstance(rows, list) and all(set(r) == {"check", "status", "detail"} for r in rows)
    return done.returncode, {r["check"]: r for r in rows}


# -- the check functions ---------------------------------------------------------------


def test_key_mode() -> None:
    key = Path("/site/keys/M-PARIS.signing.key")
    assert key_mode_check(key, 0o100600).status is Status.OK
    loose = key_mode_check(key, 0o100644)
    assert loose.status is Status.FAIL
    assert "0644" in loose.detail and str(key) in loose.detail and "chmod 600" in loose.detail
    assert key_mode_check(key, 0o100640).status is Status.FAIL
    assert key_mode_check(key, 0o100604).status is Status.FAIL
    # Owner-only but not 0600: the gateway accepts it, so only a warning.
    assert key_mode_check(key, 0o100400).status is Status.WARN
    assert key_mode_check(key, None) == Check(
        "key mode M-PARIS.signing.key", Status.FAIL, f"{key} is missing"
    )


@pytest.mark.parametrize(
    ("left", "status", "threshold"),
    [
        (timedelta(days=31), Status.OK, None),
        (timedelta(days=30, seconds=1), Status.OK, None),
        (timedelta(days=30), Status.WARN, 30),
        (timedelta(days=29), Status.WARN, 30),
        (timedelta(days=15), Status.WARN, 30),
        (timedelta(days=14), Status.WARN, 14),
        (timedelta(days=10), Status.WARN, 14),
        (timedelta(days=8), Status.WARN, 14),
        (timedelta(days=7), Status.WARN, 7),
        (timedelta(days=6), Status.WARN, 7),
        (timedelta(seconds=1), Status.WARN, 7),
        (timedelta(0), Status.FAIL, None),
        (timedelta(days=-3), Status.FAIL, None),
    ],
)
def test_expiry_thresholds(left: timedelta, status: Status, threshold: int | None) -> None:
    check = expiry_check("expiry tls certificate", "tls.crt", NOW + left, NOW)
    assert check.status is status, check
    if threshold is not None:
        assert f"within the {threshold}-day threshold" in check.detail
    if status is Status.FAIL:
        assert "expired" in check.detail


def test_expiry_not_yet_valid() -> None:
    check = expiry_check(
        "expiry key document",
        "M-PARIS.pub.xml",
        NOW + timedelta(days=365),
        NOW,
        not_before=NOW + timedelta(hours=3),
    )
    assert check.status is Status.FAIL and "not valid before" in check.detail


def test_certificate_of_10_days_warns_at_the_14_day_threshold() -> None:
    ca = SiteCA.create(now=NOW - timedelta(days=1))
    cert, _ = issue_site_certificate(ca, "M-PARIS", now=NOW, days=10)
    check = expiry_check("expiry tls certificate", "tls.crt", certificate_not_after(cert), NOW)
    assert check.status is Status.WARN
    assert "in 10 days" in check.detail and "14-day threshold" in check.detail


def test_ca_key_can_issue_until_site_days_before_the_ca_ends() -> None:
    assert ca_issuing_check(NOW + timedelta(days=SITE_DAYS + 60), NOW).status is Status.OK
    soon = ca_issuing_check(NOW + timedelta(days=SITE_DAYS + 10), NOW)
    assert soon.status is Status.WARN and "14-day threshold" in soon.detail
    late = ca_issuing_check(NOW + timedelta(days=SITE_DAYS - 1), NOW)
    assert late.status is Status.FAIL and "enrollment fails" in late.detail


def _date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def test_clock_skew_against_a_fake_date() -> None:
    # HQ's Date names a whole second; its time is taken as the middle of that second.
    hq = NOW
    mid = NOW + timedelta(seconds=0.5)
    assert clock_skew_check(mid, _date(hq)).status is Status.OK
    ok_edge = clock_skew_check(mid + timedelta(seconds=CLOCK_SKEW_WARN_S), _date(hq))
    assert ok_edge.status is Status.OK
    ahead = clock_skew_check(mid + timedelta(seconds=10), _date(hq))
    assert ahead.status is Status.WARN and "10.0 s ahead of HQ" in ahead.detail
    behind = clock_skew_check(mid - timedelta(seconds=10), _date(hq))
    assert behind.status is Status.WARN and "behind" in behind.detail
    edge = clock_skew_check(mid + timedelta(seconds=CLOCK_SKEW_FAIL_S), _date(hq))
    assert edge.status is Status.WARN
    far = clock_skew_check(mid - timedelta(seconds=CLOCK_SKEW_FAIL_S + 1), _date(hq))
    assert far.status is Status.FAIL and "NTP" in far.detail
    assert clock_skew_check(mid, None).status is Status.WARN
    assert clock_skew_check(mid, "yesterday-ish").status is Status.WARN


def test_hq_unreachable_is_a_warning() -> None:
    check = hq_reachable_check("https://127.0.0.1:1", "Connect call failed")
    assert check.status is Status.WARN and "not compared" in check.detail
    assert hq_reachable_check("https://127.0.0.1:1", None, 0.012).status is Status.OK


def test_directory_freshness() -> None:
    fresh = directory_check(3, NOW - timedelta(hours=2), NOW, at_hub=False, hq_serial=3)
    assert fresh.status is Status.OK and "serial 3" in fresh.detail
    assert "same as HQ" in fresh.detail
    unknown = directory_check(3, NOW - timedelta(hours=2), NOW, at_hub=False, hq_serial=None)
    assert unknown.status is Status.OK and "not compared" in unknown.detail
    old = directory_check(3, NOW - timedelta(days=2), NOW, at_hub=False, hq_serial=None)
    assert old.status is Status.WARN and "older than 24 h" in old.detail
    edge = directory_check(3, NOW - timedelta(days=1), NOW, at_hub=False, hq_serial=3)
    assert edge.status is Status.OK
    behind = directory_check(3, NOW - timedelta(hours=2), NOW, at_hub=False, hq_serial=4)
    assert behind.status is Status.WARN and "HQ has serial 4" in behind.detail
    ahead = directory_check(3, NOW - timedelta(hours=2), NOW, at_hub=False, hq_serial=2)
    assert ahead.status is Status.FAIL and "older serial 2" in ahead.detail
    # HQ publishes the directory: its age says nothing.
    hub = directory_check(1, NOW - timedelta(days=90), NOW, at_hub=True, hq_serial=None)
    assert hub.status is Status.OK


def _sqlite(synchronous: str, journal_mode: str = "wal") -> dict[str, str]:
    return {"backend": "sqlite", "synchronous": synchronous, "journal_mode": journal_mode}


def test_sqlite_durability() -> None:
    def statuses(d: dict[str, str]) -> dict[str, Status]:
        return {c.name: c.status for c in store_durability_checks(d)}

    assert statuses(_sqlite("FULL")) == {
        "store synchronous": Status.OK,
        "store journal_mode": Status.OK,
    }
    assert statuses(_sqlite("EXTRA"))["store synchronous"] is Status.OK
    for weaker in ("NORMAL", "OFF"):
        check = store_durability_checks(_sqlite(weaker))[0]
        assert check.status is Status.FAIL and weaker in check.detail and "FULL" in check.detail
    assert statuses(_sqlite("FULL", "delete"))["store journal_mode"] is Status.WARN


def _pg(commit: str = "on", fsync: str = "on", pages: str = "on") -> dict[str, str]:
    return {
        "backend": "postgresql",
        "synchronous_commit": commit,
        "fsync": fsync,
        "full_page_writes": pages,
    }


def test_postgres_durability() -> None:
    def statuses(d: dict[str, str]) -> dict[str, Status]:
        return {c.name: c.status for c in store_durability_checks(d)}

    for level in ("on", "remote_apply", "remote_write", "local"):
        assert set(statuses(_pg(level)).values()) == {Status.OK}, level
    assert statuses(_pg("off"))["store synchronous_commit"] is Status.FAIL
    assert statuses(_pg(fsync="off"))["store fsync"] is Status.FAIL
    assert statuses(_pg(pages="off"))["store full_page_writes"] is Status.WARN


async def test_a_real_sqlite_store_reports_full_and_wal(sqlite_path: Path) -> None:
    store = await SqliteStore.open(sqlite_path)
    try:
        checks = store_durability_checks(await store.durability())
    finally:
        await store.close()
    assert [c.status for c in checks] == [Status.OK, Status.OK]


def test_disk_thresholds() -> None:
    here = Path("/site")
    assert disk_check(here, 20 * GIB, 100 * GIB).status is Status.OK
    assert disk_check(here, 9 * GIB, 100 * GIB).status is Status.WARN  # under 10%
    small = disk_check(here, DISK_WARN_BYTES - 1, 2 * GIB)  # 50% but under 1 GiB
    assert small.status is Status.WARN and "under 10% or 1 GiB" in small.detail
    assert disk_check(here, DISK_WARN_BYTES, 2 * GIB).status is Status.OK
    assert disk_check(here, DISK_FAIL_BYTES - 1, 200 * 1024**2).status is Status.FAIL
    assert disk_check(here, 5 * GIB, 1000 * GIB).status is Status.FAIL  # 0.5%
    assert disk_check(here, 0, 0).status is Status.FAIL


# -- the command against a running network ----------------------------------------------


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with Network(tmp_path_factory.mktemp("net"), missions=("M-PARIS",), env=FAST) as network:
        yield network


def _copy_site(net: Network, site: str, to: Path) -> Path:
    """A copy of a site folder without its store (a live SQLite file is not copied)."""
    target = to / site
    shutil.copytree(
        net.sites[site].directory, target, ignore=shutil.ignore_patterns("store.sqlite*")
    )
    return target


def test_fresh_network_is_all_ok(net: Network) -> None:
    for site in ("HQ", "M-PARIS"):
        code, rows = doctor_json(net.sites[site].directory)
        assert code == 0, rows
        for name, row in rows.items():
            if name == "disk":  # the test machine's disk is not ours to judge
                assert row["status"] in ("ok", "warn"), row
            else:
                assert row["status"] == "ok", row
        assert {"store reachable", "store synchronous", "store journal_mode", "directory"} <= set(
            rows
        )
        assert f"key mode {site}.signing.key" in rows and "key mode tls.key" in rows
    _, hq = doctor_json(net.sites["HQ"].directory)
    assert {"key mode ca.key", "key mode directory.key", "expiry ca key"} <= set(hq)
    assert hq["key mode tsa.key"]["status"] == "ok"
    assert "clock skew" not in hq
    _, paris = doctor_json(net.sites["M-PARIS"].directory)
    assert {"hq reachable", "clock skew"} <= set(paris)
    assert "same as HQ" in paris["directory"]["detail"]
    text = valise("doctor", "--dir", str(net.sites["M-PARIS"].directory))
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert "0 failed" in text.stderr


def test_a_readable_key_fails(net: Network, tmp_path: Path) -> None:
    paris = _copy_site(net, "M-PARIS", tmp_path)
    key = paris / "keys" / "M-PARIS.signing.key"
    key.chmod(0o644)
    code, rows = doctor_json(paris)
    assert code == 1
    row = rows["key mode M-PARIS.signing.key"]
    assert row["status"] == "fail" and "0644" in row["detail"] and str(key) in row["detail"]
    assert rows["key mode tls.key"]["status"] == "ok"
    assert rows["store reachable"]["status"] == "warn"  # not copied: reported, not created
    assert not (paris / "store.sqlite").exists()
    text = valise("doctor", "--dir", str(paris))
    assert text.returncode == 1 and "1 failed" in text.stderr
    assert any(line.split()[3:4] == ["fail"] for line in text.stdout.splitlines())


def test_a_certificate_ending_in_10_days_warns(net: Network, tmp_path: Path) -> None:
    paris = _copy_site(net, "M-PARIS", tmp_path)
    hq_keys = net.sites["HQ"].directory / "keys"
    ca = SiteCA.from_pem((hq_keys / "ca.crt").read_bytes(), (hq_keys / "ca.key").read_bytes())
    public = site_public_key((paris / "keys" / "tls.key").read_bytes())
    cert, _ = issue_site_certificate(ca, "M-PARIS", public, now=datetime.now(UTC), days=10)
    (paris / "keys" / "tls.crt").write_bytes(cert)
    code, rows = doctor_json(paris)
    assert code == 0, rows
    row = rows["expiry tls certificate"]
    assert row["status"] == "warn" and "14-day threshold" in row["detail"], row
    # Same key, so the same pin: HQ still accepts the renewed certificate.
    assert rows["hq reachable"]["status"] == "ok"


def test_a_key_ring_is_checked(net: Network, tmp_path: Path) -> None:
    """After the first rotation the keys live in keys/ring/: their modes are checked,
    the legacy files are not asked for, and the TLS certificate and key in force are
    the ring's active ones (for the expiry row and for reaching HQ)."""
    paris = _copy_site(net, "M-PARIS", tmp_path)
    keys = paris / "keys"
    ring = load_ring(keys)
    save_ring(ring)  # migrate: the legacy files go
    new = generate_key(ring, "signing", now=datetime.now(UTC))
    save_ring(ring)
    assert not (keys / "tls.crt").exists() and not (keys / "M-PARIS.signing.key").exists()
    tls = ring.active("tls")
    # A renewed certificate for the same key, in the ring only.
    hq_keys = net.sites["HQ"].directory / "keys"
    ca = SiteCA.from_pem((hq_keys / "ca.crt").read_bytes(), (hq_keys / "ca.key").read_bytes())
    public = site_public_key(ring.path(tls).read_bytes())
    cert, _ = issue_site_certificate(ca, "M-PARIS", public, now=datetime.now(UTC), days=10)
    ring.path(tls, ".crt").write_bytes(cert)
    loose = ring.path(new)
    loose.chmod(0o644)

    code, rows = doctor_json(paris)
    assert code == 1, rows
    row = rows[f"key mode {loose.name}"]
    assert row["status"] == "fail" and "0644" in row["detail"] and str(loose) in row["detail"]
    for k in ring.keys:
        if k.id != new.id:
            assert rows[f"key mode {ring.path(k).name}"]["status"] == "ok", k
    assert "key mode M-PARIS.signing.key" not in rows and "key mode tls.key" not in rows
    expiry = rows["expiry tls certificate"]
    assert expiry["status"] == "warn" and "14-day threshold" in expiry["detail"], expiry
    assert ring.path(tls, ".crt").name in expiry["detail"]
    assert rows["expiry key document"]["status"] == "ok"
    assert rows["hq reachable"]["status"] == "ok", rows["hq reachable"]
    failed = [name for name, r in rows.items() if r["status"] == "fail"]
    assert failed == [f"key mode {loose.name}"], rows


def test_hq_unreachable_warns(net: Network) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    code, rows = doctor_json(net.sites["M-PARIS"].directory, env={"VALISE_SITE_HUB_ENDPOINT": dead})
    assert code == 0, rows
    assert rows["hq reachable"]["status"] == "warn" and dead in rows["hq reachable"]["detail"]
    assert "clock skew" not in rows
    assert "HQ not compared" in rows["directory"]["detail"]


def test_not_a_site_folder(tmp_path: Path) -> None:
    done = valise("doctor", "--dir", str(tmp_path))
    assert done.returncode == 3 and "valise.toml not found" in done.stderr
