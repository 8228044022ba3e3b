"""The SMTP bridge takes mail only from authenticated integrators unless told otherwise."""

from __future__ import annotations

from config.site import SmtpSection, enabled
from gateway.doctor_checks import Status, smtp_auth_check


def test_auth_is_required_by_default() -> None:
    assert enabled(SmtpSection().require_auth)


def test_doctor_warns_about_a_bridge_without_auth() -> None:
    check = smtp_auth_check(require_auth=False, bridge_on=True)
    assert check.status is Status.WARN and "require_auth = no" in check.detail
    assert smtp_auth_check(require_auth=True, bridge_on=True).status is Status.OK
    assert smtp_auth_check(require_auth=False, bridge_on=False).status is Status.OK
