"""[keys] bounds (review 10, F6): tls_renew_days from 1 to under tls_days and longer
than announce_seconds (a renewed TLS key waits as next up to that long: the old
certificate must outlast it); overlap_seconds and check_seconds finite."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.sections import MAX_ANNOUNCE_SECONDS, MAX_OVERLAP_SECONDS
from config.site import ConfigError, load_site_config

HUB_TOML = (
    '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
    'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n'
)
NUMBERS = st.one_of(
    st.integers(min_value=-10, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e20"]),
)


def _env(**values: object) -> dict[str, str]:
    return {f"VALISE_KEYS_{k.upper()}": str(v) for k, v in values.items()}


@given(
    renew=st.integers(min_value=-10, max_value=800),
    days=st.integers(min_value=-1, max_value=800),
    announce=NUMBERS,
    overlap=NUMBERS,
    check=NUMBERS,
)
def test_any_keys_section_loads_only_within_its_bounds(
    tmp_path_factory: pytest.TempPathFactory,
    renew: int,
    days: int,
    announce: object,
    overlap: object,
    check: object,
) -> None:
    site = tmp_path_factory.mktemp("site")
    (site / "valise.toml").write_text(HUB_TOML)
    env = _env(
        tls_renew_days=renew,
        tls_days=days,
        announce_seconds=announce,
        overlap_seconds=overlap,
        check_seconds=check,
    )
    try:
        k = load_site_config(site, env).keys
    except ConfigError:
        return
    assert 1 <= k.tls_renew_days < k.tls_days
    assert 0 <= k.announce_seconds <= MAX_ANNOUNCE_SECONDS
    assert k.tls_renew_days * 86400 > k.announce_seconds
    assert math.isfinite(k.check_seconds) and k.check_seconds > 0
    assert 0 <= k.overlap_seconds <= MAX_OVERLAP_SECONDS


@pytest.mark.parametrize(
    "values",
    [
        {"tls_renew_days": 0},
        {"tls_renew_days": -5},
        {"tls_renew_days": 365},
        {"tls_renew_days": 7, "announce_seconds": 30 * 86400},
        {"tls_renew_days": 1, "announce_seconds": 86400},
        {"check_seconds": "nan"},
        {"overlap_seconds": "nan"},
        {"overlap_seconds": "inf"},
    ],
)
def test_the_reviewer_s_values_are_refused(tmp_path: Path, values: dict[str, object]) -> None:
    (tmp_path / "valise.toml").write_text(HUB_TOML)
    with pytest.raises(ConfigError, match=r"\[keys\]"):
        load_site_config(tmp_path, _env(**values))


def test_the_defaults_load(tmp_path: Path) -> None:
    (tmp_path / "valise.toml").write_text(HUB_TOML)
    k = load_site_config(tmp_path, {}).keys
    assert (k.tls_renew_days, k.tls_days) == (30, 365)
