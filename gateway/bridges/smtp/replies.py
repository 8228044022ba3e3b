"""SMTP replies with enhanced status codes (RFC 2034 / RFC 3463). Pure.

The bridge's own replies carry their codes; the replies aiosmtpd writes itself
(syntax errors, the SIZE check, STARTTLS) do not all, so every reply goes through
:func:`enhance` on its way out. Rules (RFC 2034 section 3): the 220 greeting, the
EHLO lines, ``334`` AUTH challenges and the ``354`` DATA prompt carry no enhanced
code; every other reply gets one, the most specific we know for its basic code.
"""

from __future__ import annotations

import re

_HAS_ENHANCED = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_BASIC = re.compile(r"(?P<code>[245]\d\d)(?P<sep>[ -])?(?P<text>.*)", re.DOTALL)
_NO_ENHANCED = {"220", "334", "354"}

# The enhanced code for a basic code aiosmtpd answers with on its own (RFC 3463).
ENHANCED_FOR_BASIC = {
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "421": "4.4.2",
    "451": "4.3.0",
    "452": "4.5.3",
    "454": "4.7.0",
    "500": "5.5.2",  # syntax error, command unrecognised, line too long
    "501": "5.5.4",  # invalid command arguments
    "502": "5.5.1",
    "503": "5.5.1",  # bad sequence of commands
    "504": "5.5.4",
    "530": "5.7.0",  # STARTTLS or AUTH first
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",  # message too big for system
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}

# Replies of the bridge itself.
OK = "250 2.0.0 Ok"
SENDER_OK = "250 2.1.0 Sender ok"
RECIPIENT_OK = "250 2.1.5 Recipient ok"
BYE = "221 2.0.0 Bye"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BAD_LINE_ENDING = "500 5.5.2 Bare CR or LF in a command line is not allowed; closing"
BAD_DATA_ENDING = "550 5.6.0 Bare CR or LF in the message is not allowed (RFC 5321 2.3.8)"
NO_RECIPIENTS = "554 5.5.1 No valid recipients"
NOT_QUEUED = "451 4.3.0 The message could not be queued; try again later"
IDLE_TIMEOUT = "421 4.4.2 Idle for too long; closing"
INTERNAL_ERROR = "451 4.3.0 Internal error; try again later"
TOO_BIG = "552 5.3.4 Message size exceeds the fixed maximum message size"
AUTHZID_REFUSED = "535 5.7.8 Authentication refused: one may act only as oneself"
TOO_MANY_SESSIONS = "421 4.7.0 Too many connections; try again later"
PREAUTH_TIMEOUT = "421 4.7.0 Not authenticated in time; closing"
PREAUTH_EVICTED = "421 4.7.0 Too many unauthenticated connections; closing the oldest"


def enhance(reply: str, *, in_ehlo: bool = False) -> str:
    """``reply`` with an enhanced status code inserted after its basic code, when due."""
    m = _BASIC.match(reply)
    if m is None or _HAS_ENHANCED.match(reply) or m["code"] in _NO_ENHANCED:
        return reply
    code, sep, text = m["code"], m["sep"] or " ", m["text"]
    if in_ehlo and code == "250":
        return reply
    enhanced = ENHANCED_FOR_BASIC.get(code, f"{code[0]}.0.0")
    return f"{code}{sep}{enhanced} {text}".rstrip()


def queued(message_ids: list[str]) -> str:
    """The final DATA reply once every envelope is durably queued."""
    return f"250 2.0.0 Ok: queued as {' '.join(message_ids)}"
