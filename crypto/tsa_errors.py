"""RFC 3161 time-stamping: the error and the limits, without pyasn1.

What importers of :mod:`crypto.tsa` and :mod:`crypto.tsa_verify` need before any token
is read: the error they raise and the sizes they accept. pyasn1 (whose RFC modules take
a tenth of a second to import) is loaded only when a request, response or token is
actually encoded or decoded (crypto/tsa_asn1.py), so that a ``valise`` command that never
touches a time-stamp does not pay for it at every start.
"""

from __future__ import annotations

from crypto.errors import CryptoError

MAX_TOKEN_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 16 * 1024
MAX_RESPONSE_BYTES = MAX_TOKEN_BYTES + 8 * 1024
IMPRINT_BYTES = 32
MAX_SERIAL = 1 << 160
MAX_NONCE = 1 << 256
MAX_FRACTION_DIGITS = 6

_FAILURES = (
    "badAlg",
    "badRequest",
    "badDataFormat",
    "timeNotAvailable",
    "unacceptedPolicy",
    "unacceptedExtension",
    "addInfoNotAvailable",
    "systemFailure",
)


class TimestampError(CryptoError):
    """A time-stamp request, token or authority is not acceptable.

    ``failure`` names the RFC 3161 PKIFailureInfo bit that a TSA answers with
    (:func:`rejection`); it means little for a refused token.
    """

    def __init__(self, message: str, *, failure: str = "badRequest") -> None:
        super().__init__(message)
        self.failure = failure if failure in _FAILURES else "badRequest"
