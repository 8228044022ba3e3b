"""Submitting many messages through a bridge while its gateway is being killed.

The client is the one an integrator should write: it sends each message until it
gets an acknowledgement, reconnecting after any failure, and a message that got
none is sent again. :func:`submit_all` holds that loop for any bridge: give it a
``send(i)`` that raises on failure and returns the message ids acknowledged for
message ``i`` (:class:`SmtpSender` for the SMTP bridge; the HTTP API gets its own).
Afterwards :class:`Outcome` says which messages were acknowledged and after how
many attempts (an attempt cut off after the commit but before the acknowledgement
queues a message the client never heard of: at most ``attempts`` copies of a
message may arrive, and every acknowledged id exactly once).
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.smtp import no_verify, queued_ids

SendOne = Callable[[int], list[str]]


@dataclass
class Outcome:
    acked: dict[int, list[str]] = field(default_factory=dict)  # index -> acknowledged ids
    attempts: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # why attempts failed, for the report

    @property
    def acked_ids(self) -> list[str]:
        return [mid for ids in self.acked.values() for mid in ids]


def submit_all(send: SendOne, n: int, outcome: Outcome, *, deadline_s: float = 120.0) -> None:
    """Send messages 0..n-1 in order, each until acknowledged; fills ``outcome``."""
    deadline = time.monotonic() + deadline_s
    for i in range(n):
        while True:
            outcome.attempts[i] = outcome.attempts.get(i, 0) + 1
            try:
                outcome.acked[i] = send(i)
                break
            except Exception as exc:  # any failure: connection lost, refused, timeout
                outcome.failures.append(f"{i}: {type(exc).__name__}: {exc}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"message {i} never acknowledged") from exc
                time.sleep(0.05)


def in_background(
    send: SendOne, n: int, deadline_s: float = 120.0
) -> tuple[Outcome, threading.Thread]:
    """Run :func:`submit_all` in a thread; the outcome fills in as it goes."""
    outcome = Outcome()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            submit_all(send, n, outcome, deadline_s=deadline_s)
        except BaseException as exc:  # reported by the caller through the outcome
            errors.append(exc)
            outcome.failures.append(f"gave up: {exc!r}")

    thread = threading.Thread(target=run, name="submitter", daemon=True)
    thread.start()
    return outcome, thread


class SmtpSender:
    """``send(i)`` over one SMTP connection, reconnected after any failure; logged in
    as ``login`` (integrator, token) over STARTTLS (the bridge requires AUTH)."""

    def __init__(
        self,
        port: Callable[[], int],
        sender: str,
        recipients: list[str],
        message: Callable[[int], bytes],
        login: tuple[str, str],
        timeout: float = 5.0,
    ) -> None:
        self.port = port
        self.sender = sender
        self.recipients = recipients
        self.message = message
        self.login = login
        self.timeout = timeout
        self.client: smtplib.SMTP | None = None

    def __call__(self, i: int) -> list[str]:
        try:
            if self.client is None:
                self.client = smtplib.SMTP("127.0.0.1", self.port(), timeout=self.timeout)
                self.client.starttls(context=no_verify())
                self.client.login(*self.login)
            client = self.client
            code, text = client.mail(self.sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, self.sender)
            for rcpt in self.recipients:
                code, text = client.rcpt(rcpt)
                if code != 250:
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            code, text = client.data(self.message(i))
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
            return queued_ids(text.decode())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
