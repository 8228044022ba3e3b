"""The SMTP protocol of the bridge: aiosmtpd's server, made strict.

aiosmtpd does the protocol (commands, dot-unstuffing, SIZE, STARTTLS, AUTH); this
subclass changes only what a gateway must not leave to its defaults:
- every reply carries an enhanced status code (gateway/bridges/smtp/replies.py),
  and ``ENHANCEDSTATUSCODES`` is advertised;
- a command line must end in CRLF and hold no other CR: a bare CR or LF is
  answered ``500 5.5.2`` and the connection is closed (DATA is checked by the
  handler, which refuses the message instead: the data ended properly);
- AUTH PLAIN and LOGIN (aiosmtpd's decoding) are checked by an async callable,
  against the integrator tokens; a PLAIN authorization identity other than the
  login (act as ``bob``, prove to be ``alice``: RFC 4616) is refused ``535 5.7.8``,
  where aiosmtpd would drop it and let the session through;
- an idle connection is told ``421 4.4.2`` before it is closed;
- at most ``max_sessions`` sessions are open at once, ``max_preauth_sessions`` of
  them not yet authenticated (gateway/bridges/smtp/sessions.py, one pool for the
  whole listener): one more ends the likeliest attacker's pre-auth session to make
  room (``421 4.7.0``), and is itself told ``421 4.7.0`` and closed before anything
  else only when every open session is authenticated;
- a session must authenticate within ``preauth_timeout`` seconds of connecting (or,
  when AUTH is not required, begin a transaction: MAIL accepted), however busy it
  keeps itself with NOOPs: else ``421 4.7.0`` and it is closed. The idle timeout
  alone never ends a session that sends a NOOP now and then (slowloris);
- command line sizes are per connection (aiosmtpd keeps them in a class attribute
  that every EHLO grows), and an unexpected error is answered ``451 4.3.0``
  without its text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword

from gateway.bridges.mail.address import MailRecipient
from gateway.bridges.smtp.replies import (
    AUTHZID_REFUSED,
    BAD_LINE_ENDING,
    IDLE_TIMEOUT,
    INTERNAL_ERROR,
    PREAUTH_EVICTED,
    PREAUTH_TIMEOUT,
    TOO_MANY_SESSIONS,
    enhance,
)
from gateway.bridges.smtp.sessions import SessionSlots

log = logging.getLogger("valise.smtp")

COMMAND_BYTES = 512  # RFC 5321 4.5.3.1.4, with the CRLF
AUTH_COMMAND_BYTES = 2048  # an AUTH PLAIN initial response with a token fits easily
# Commands per connection; a client over a limit is told 421 4.7.0 and dropped.
CALL_LIMITS = {
    "*": 10_000,  # MAIL, RCPT, DATA, RSET: many messages on one connection are fine
    "EHLO": 10,
    "HELO": 10,
    "STARTTLS": 2,
    "AUTH": 3,
    "NOOP": 100,
    "VRFY": 5,
    "EXPN": 5,
    "HELP": 10,
}

Login = Callable[[bytes, bytes], Awaitable[str | None]]


class BareLineEnding(Exception):
    """A command line with a CR or LF that is not part of its final CRLF."""


class MailEnvelope(Envelope):
    """aiosmtpd's envelope, plus what the bridge parsed from MAIL and RCPT."""

    def __init__(self) -> None:
        super().__init__()
        self.sender: str | None = None  # None: the null sender <>
        self.recipients: list[tuple[str, MailRecipient]] = []  # (as given, parsed)


def _bare_in_command(line: bytes) -> bool:
    return not line.endswith(b"\r\n") or b"\r" in line[:-2] or b"\n" in line[:-2]


class _StrictLines:
    """Wraps a reader so that a command line with a bare CR or LF raises.

    Commands (and AUTH responses) are read up to LF, DATA up to CRLF. A line longer
    than the buffer is read in pieces (aiosmtpd answers 500 and discards it): its
    last piece may then be the LF of a CRLF cut in two, which is no bare LF.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._readuntil = reader.readuntil
        self._read = reader.read
        self._overrun = False
        self._tail = b""
        self._refused = False  # a bare line ending was seen: read nothing more

    async def read(self, n: int = -1) -> bytes:
        data = await self._read(n)
        self._tail = data[-1:]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        if self._refused:
            # Whatever was pipelined after the bad line is never run: wait for the
            # close (which cancels the session) instead.
            await asyncio.get_running_loop().create_future()
        try:
            line = await self._readuntil(separator)
        except asyncio.LimitOverrunError:
            self._overrun = True
            raise
        if separator == b"\n":
            continued, self._overrun = self._overrun, False
            if continued and line == b"\n" and self._tail == b"\r":
                return line
            if _bare_in_command(line):
                self._refused = True
                raise BareLineEnding
        return line


class ValiseSMTP(SMTP):
    def __init__(
        self,
        handler: Any,
        *,
        login: Login,
        slots: SessionSlots,
        preauth_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._login = login
        self._in_ehlo = False
        self.command_size_limits = self._fresh_limits()
        self._slots = slots
        self._slot_taken = False
        self._turned_away = False
        self._preauth_timeout = preauth_timeout
        self._preauth: asyncio.TimerHandle | None = None
        self._spoken = False  # any byte received from the client

    @staticmethod
    def _fresh_limits() -> defaultdict[str, int]:
        return defaultdict(lambda: COMMAND_BYTES, {"AUTH": AUTH_COMMAND_BYTES})

    def _create_envelope(self) -> MailEnvelope:
        return MailEnvelope()

    # -- how many sessions, and how long without AUTH ----------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and not self._slot_taken:  # a new connection, not STARTTLS
            if not self._slots.take(self):
                self._turned_away = True
                transport.write(TOO_MANY_SESSIONS.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._slot_taken = True
            self._preauth = self.loop.call_later(self._preauth_timeout, self._preauth_expired)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return  # nothing was set up for it
        self._cancel_preauth()
        if self._slot_taken:
            self._slot_taken = False
            self._slots.give_back(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        self._spoken = True
        super().data_received(data)

    @property
    def has_spoken(self) -> bool:
        return self._spoken

    def make_room(self) -> None:
        # The pool has already given this session's place to a newcomer.
        self._slot_taken = False
        self._cancel_preauth()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(PREAUTH_EVICTED.encode() + b"\r\n")  # type: ignore[attr-defined]
            transport.close()

    def _cancel_preauth(self) -> None:
        if self._preauth is not None:
            self._preauth.cancel()
            self._preauth = None

    def _authenticated_in_time(self) -> None:
        self._cancel_preauth()
        if self._slot_taken:
            self._slots.authenticated(self)

    def _preauth_expired(self) -> None:
        self._preauth = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info(json.dumps({"event": "smtp_preauth_timeout", "peer": str(self._peer())}))
            transport.write(PREAUTH_TIMEOUT.encode() + b"\r\n")  # type: ignore[attr-defined]
            transport.close()

    async def smtp_MAIL(self, arg: str) -> None:
        await super().smtp_MAIL(arg)
        envelope = self.envelope
        if not self._auth_required and envelope is not None and envelope.mail_from is not None:
            self._authenticated_in_time()  # no AUTH to wait for: a transaction began

    # -- strict line endings ------------------------------------------------------
    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        strict = _StrictLines(reader)
        reader.readuntil = strict.readuntil  # type: ignore[method-assign,assignment]
        reader.read = strict.read  # type: ignore[method-assign]

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, BareLineEnding):
            transport = self.transport
            if transport is not None:
                # After the reply is written (close() flushes what is buffered).
                self.loop.call_soon(transport.close)
            return BAD_LINE_ENDING
        log.error(json.dumps({"event": "smtp_error", "reason": f"{type(error).__name__}: {error}"}))
        return INTERNAL_ERROR

    def _timeout_cb(self) -> None:
        # RFC 5321 4.5.3.2: say why before closing an idle connection.
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(IDLE_TIMEOUT.encode() + b"\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    # -- enhanced status codes ----------------------------------------------------
    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = enhance(status, in_ehlo=self._in_ehlo)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits = self._fresh_limits()
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    # -- AUTH against integrator tokens ---------------------------------------------
    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously; the check is async, so the decoded
        # credentials are handed back to auth_PLAIN / auth_LOGIN below.
        return AuthResult(success=False, handled=False, auth_data=auth_data)

    async def _check(self, result: AuthResult) -> AuthResult:
        data = result.auth_data
        if result.success or result.handled or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=result.handled)
        name = await self._login(data.login, data.password)
        if name is None:
            log.warning(json.dumps({"event": "smtp_auth_failed", "peer": str(self._peer())}))
            return AuthResult(success=False, handled=False)
        self._authenticated_in_time()
        return AuthResult(success=True, auth_data=name)

    def _peer(self) -> object:
        return self.session.peer if self.session is not None else None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        # aiosmtpd's auth_PLAIN discards the authorization identity; it is read here.
        if len(args) == 1:
            response = await self.challenge_auth("")
            if response is MISSING or not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                response = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = response.split(b"\x00")
        if len(fields) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = fields
        if authzid and authzid != login:
            shown = authzid[:64].decode("utf-8", "replace")
            event = {"event": "smtp_authzid_refused", "peer": str(self._peer()), "as": shown}
            log.warning(json.dumps(event))
            return AuthResult(success=False, handled=False, message=AUTHZID_REFUSED)
        return await self._check(
            AuthResult(success=False, handled=False, auth_data=LoginPassword(login, password))
        )

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._check(await super().auth_LOGIN(_, args))
