"""Configuration is parsed and checked once, at load (issue 13): a bad value is refused
when the site loads, naming its key, and what deliveries read is already parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.site import CONFIG_NAME, ConfigError, load_site_config

SITE = (
    '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
    'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n'
)


def _load(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    (tmp_path / CONFIG_NAME).write_text(SITE)
    return load_site_config(tmp_path, {f"VALISE_{k}": v for k, v in env.items()})


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("DELIVERY_SMARTHOST", "mail.example", r"\[delivery\] smarthost"),
        ("DELIVERY_SMARTHOST", "mail.example:99999", r"\[delivery\] smarthost"),
        ("DELIVERY_SMARTHOST_STARTTLS", "maybe", r"\[delivery\] smarthost_starttls"),
        ("SMTP_REQUIRE_TLS", "sometimes", r"\[smtp\] require_tls"),
        ("HTTP_ENABLED", "y", r"\[http\] enabled"),
        ("DELIVERY_MAILBOXES", "alice=pigeon", r"\[delivery\] mailboxes"),
        ("DELIVERY_MAILBOXES", "registry=smtp", r"\[delivery\] smarthost"),
    ],
)
def test_a_bad_value_is_refused_at_load_naming_its_key(
    tmp_path: Path, key: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        _load(tmp_path, **{key: value})


def test_what_a_delivery_reads_is_parsed_at_load(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        DELIVERY_SMARTHOST="[::1]:2525",
        DELIVERY_SMARTHOST_STARTTLS="no",
        DELIVERY_MAILBOXES="Alice=maildir, registry=smtp",
    )
    d = config.delivery
    assert d.smarthost_address == ("::1", 2525)
    assert d.starttls is False
    assert d.mode_for("alice") == "maildir" and d.mode_for("REGISTRY") == "smtp"
    assert d.mode_for("bob") == d.mode == "inbox" and d.mode_for(None) == "inbox"
    assert "smarthost_address" in vars(d) and "modes" in vars(d)  # computed once, kept
