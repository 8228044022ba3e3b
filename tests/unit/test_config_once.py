"""Configuration is parsed and checked once, at load (issue 13): a bad value is refused
when the site loads, naming its key, and what deliveries read is already parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.site import CONFIG_NAME, ConfigError, enabled, load_site_config

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
        # Review 13 (adv13 a5, a6): numbers out of range loaded (a negative lease had
        # two couriers of one site send the same documents), and endpoints not URLs.
        ("RELAY_LEASE_SECONDS", "-5", r"\[relay\] lease_seconds must be above 0"),
        ("RELAY_LEASE_SECONDS", "0", r"\[relay\] lease_seconds"),
        ("RELAY_LEASE_SECONDS", "nan", r"\[relay\] lease_seconds must be a finite"),
        ("RELAY_RETRY_BASE_SECONDS", "-1", r"\[relay\] retry_base_seconds"),
        ("RELAY_RETRY_MAX_SECONDS", "inf", r"\[relay\] retry_max_seconds"),
        ("RELAY_RETRY_MAX_SECONDS", "0.5", r"retry_max_seconds must be at least"),
        ("RELAY_DIRECTORY_POLL_SECONDS", "0", r"\[relay\] directory_poll_seconds"),
        ("RELAY_REQUEST_TIMEOUT_SECONDS", "-inf", r"\[relay\] request_timeout_seconds"),
        ("HTTP_MAX_BODY_BYTES", "0", r"\[http\] max_body_bytes"),
        ("HTTP_WEBHOOK_TIMEOUT_SECONDS", "NaN", r"\[http\] webhook_timeout_seconds"),
        ("SMTP_MAX_MESSAGE_BYTES", "-1", r"\[smtp\] max_message_bytes"),
        ("SMTP_MAX_RECIPIENTS", "0", r"\[smtp\] max_recipients"),
        ("SMTP_TIMEOUT_SECONDS", "0", r"\[smtp\] timeout_seconds"),
        ("AUDIT_CHECKPOINT_SECONDS", "inf", r"\[audit\] checkpoint_seconds"),
        ("RELAY_BATCH_ENVELOPES", "2.5", r"\[relay\] batch_envelopes must be an integer"),
        ("SITE_ENDPOINT", "127.0.0.1:8443", r"\[site\] endpoint must be an https:// URL"),
        ("SITE_ENDPOINT", "http://hq.example:8443", r"\[site\] endpoint"),
        ("SITE_HUB_ENDPOINT", "https://:8443", r"\[site\] hub_endpoint"),
        ("SITE_HUB_ENDPOINT", "https://hq.example:99999", r"\[site\] hub_endpoint"),
        ("SITE_HUB_ENDPOINT", "https://u:p@hq.example:8443", r"\[site\] hub_endpoint"),
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


def _load_toml(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    (tmp_path / CONFIG_NAME).write_text(SITE + extra)
    return load_site_config(tmp_path, {})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("[relay]\nbatch_envelopes = true\n", r"\[relay\] batch_envelopes must be an integer"),
        ("[relay]\nbatch_envelopes = 3.7\n", r"\[relay\] batch_envelopes must be an integer"),
        ("[relay]\nlease_seconds = false\n", r"\[relay\] lease_seconds must be a number"),
        ("[relay]\nlease_seconds = nan\n", r"\[relay\] lease_seconds must be a finite"),
        ("[relay]\nlease_seconds = -inf\n", r"\[relay\] lease_seconds must be a finite"),
        ("[store]\npath = true\n", r"\[store\] path must be a string"),
        ("[http]\nenabled = 1\n", r"\[http\] enabled must be a string"),
    ],
)
def test_a_toml_value_of_the_wrong_kind_is_refused(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _load_toml(tmp_path, extra)


def test_a_toml_boolean_is_taken_by_a_yes_no_setting(tmp_path: Path) -> None:
    config = _load_toml(
        tmp_path,
        "[http]\nenabled = false\n\n[smtp]\nrequire_tls = true\n[relay]\nlease_seconds = 5\n",
    )
    assert enabled(config.http.enabled) is False and enabled(config.smtp.require_tls) is True
    assert config.relay.lease_seconds == 5.0
