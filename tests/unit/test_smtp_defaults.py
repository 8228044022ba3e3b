"""The SMTP bridge takes mail only from authenticated integrators unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.sections import SmtpSection
from config.site import CONFIG_NAME, ConfigError, enabled, load_site_config
from gateway.service.doctor_checks import Status, smtp_auth_check

SITE = (
    '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
    'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n'
)


def test_auth_is_required_by_default() -> None:
    assert enabled(SmtpSection().require_auth)


def test_doctor_warns_about_a_bridge_without_auth() -> None:
    check = smtp_auth_check(require_auth=False, bridge_on=True)
    assert check.status is Status.WARN and "require_auth = no" in check.detail
    assert smtp_auth_check(require_auth=True, bridge_on=True).status is Status.OK
    assert smtp_auth_check(require_auth=False, bridge_on=False).status is Status.OK


def test_sessions_and_the_time_to_authenticate_are_bounded_by_default() -> None:
    assert SmtpSection().max_sessions == 100
    assert SmtpSection().preauth_timeout_seconds == 30.0


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("MAX_SESSIONS", "0", False),
        ("MAX_SESSIONS", "1", True),
        ("PREAUTH_TIMEOUT_SECONDS", "0", False),
        ("PREAUTH_TIMEOUT_SECONDS", "0.5", True),
    ],
)
def test_the_session_limits_must_be_positive(
    tmp_path: Path, key: str, value: str, ok: bool
) -> None:
    (tmp_path / CONFIG_NAME).write_text(SITE)
    env = {f"VALISE_SMTP_{key}": value}
    if ok:
        load_site_config(tmp_path, env)
    else:
        with pytest.raises(ConfigError, match=r"\[smtp\] max_sessions"):
            load_site_config(tmp_path, env)
