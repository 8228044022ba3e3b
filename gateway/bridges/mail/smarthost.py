"""The SMTP client to the site's local mail server (``[delivery] smarthost``).

Standard-library :mod:`smtplib`, run in a worker thread so the event loop never
blocks. With ``[delivery] smarthost_starttls = yes`` (the default) the connection
must be upgraded with STARTTLS and the server's certificate verified against the
system trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured) and its host
name; a server that offers no STARTTLS is a temporary failure, never a silent
downgrade. The message bytes are sent as they are (smtplib only dot-stuffs them);
``BODY=8BITMIME`` is declared when they are 8-bit and the server supports it.

Failures: a 5xx answer is :class:`SmarthostRefused` (permanent: retrying cannot
help; a :class:`~gateway.runtime.errors.Refused`), anything else (connection refused,
timeout, 4xx, TLS) is :class:`SmarthostUnavailable` (try again later; a
:class:`~gateway.runtime.errors.Retry`).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence

from gateway.runtime.errors import Refused, Retry

TIMEOUT_SECONDS = 30.0


class SmarthostError(Exception):
    """Delivery to the smarthost failed."""


class SmarthostUnavailable(SmarthostError, Retry):
    """Temporary: try again later."""


class SmarthostRefused(SmarthostError, Refused):
    """Permanent: the server refused the message (5xx)."""


def _is_8bit(data: bytes) -> bool:
    return any(b > 0x7F for b in data)


def _send_sync(
    address: tuple[str, int],
    *,
    starttls: bool,
    helo: str,
    mail_from: str,
    recipients: Sequence[str],
    data: bytes,
    timeout: float,
) -> None:
    host, port = address
    smarthost = f"{host}:{port}"
    try:
        with smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout) as client:
            client.ehlo()
            if starttls:
                if not client.has_extn("starttls"):
                    raise SmarthostUnavailable(f"{smarthost} does not offer STARTTLS")
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            options = ["BODY=8BITMIME"] if _is_8bit(data) and client.has_extn("8bitmime") else []
            client.sendmail(mail_from, list(recipients), data, mail_options=options)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{r}: {c} {m!r}" for r, (c, m) in exc.recipients.items())
        if codes and all(c >= 500 for c in codes):
            raise SmarthostRefused(f"{smarthost} refused {detail}") from None
        raise SmarthostUnavailable(f"{smarthost} deferred {detail}") from None
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        if exc.smtp_code >= 500:
            raise SmarthostRefused(f"{smarthost} refused: {exc.smtp_code} {text}") from None
        raise SmarthostUnavailable(f"{smarthost}: {exc.smtp_code} {text}") from None
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError and timeouts included
        raise SmarthostUnavailable(f"{smarthost}: {type(exc).__name__}: {exc}") from None


async def send_via_smarthost(
    address: tuple[str, int],
    *,
    starttls: bool,
    helo: str,
    mail_from: str,
    recipients: Sequence[str],
    data: bytes,
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """Hand ``data`` to the smarthost (``mail_from`` "" is the null sender ``<>``).

    Raises :class:`SmarthostRefused` or :class:`SmarthostUnavailable`.
    """
    await asyncio.to_thread(
        _send_sync,
        address,
        starttls=starttls,
        helo=helo,
        mail_from=mail_from,
        recipients=recipients,
        data=data,
        timeout=timeout,
    )
