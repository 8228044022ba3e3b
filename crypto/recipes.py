"""The safe door: the recipes that envelope/ is built from.

Rules:
- One suite, fixed by format version 1: HPKE base mode with ML-KEM-768+X25519,
  HKDF-SHA256 and ChaCha20-Poly1305 for wrapping; Ed25519 for signatures;
  STREAM over ChaCha20-Poly1305 for payload parts.
- Every label starts with ``valise/v1/``; a key is never used for two purposes.
- Failures raise: :class:`DecryptionError` (opaque) or :class:`SignatureError`.

The payload stream is the STREAM construction (Hoang, Reyhanitabar, Rogaway and
Vizár, 2015) as age uses it: each part has its own key derived from the envelope's
content key and the part's index; chunk ``i`` is sealed under the nonce
``i`` (11 bytes, big-endian) followed by a flag byte that is 1 on the last chunk
and 0 elsewhere. Reordering, duplication, truncation, appending and swapping
chunks between parts or envelopes all fail authentication.
"""

from __future__ import annotations

from crypto import _primitives as p
from crypto.errors import DecryptionError, SignatureError
from crypto.keys import DecryptionKey, EncryptionKey, SigningKey, VerifyKey
from crypto.random import SYSTEM_RANDOM, RandomSource

CONTENT_KEY_BYTES = 32
SIGNATURE_BYTES = 64
CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
CHUNK_CIPHERTEXT_BYTES = CHUNK_BYTES + TAG_BYTES
# The ML-KEM-768+X25519 encapsulation (1120 bytes) followed by the sealed content key.
WRAP_BYTES = 1120 + CONTENT_KEY_BYTES + TAG_BYTES
# An 11-byte counter leaves room for 2**88 chunks; we stop far sooner.
MAX_CHUNKS = 2**40

PART_KEY_LABEL = b"valise/v1/part\x00"
_LAST = b"\x01"
_NOT_LAST = b"\x00"


def new_content_key(rng: RandomSource = SYSTEM_RANDOM) -> bytes:
    """A fresh 32-byte content key for one envelope."""
    return rng.random_bytes(CONTENT_KEY_BYTES)


def wrap(content_key: bytes, recipient: EncryptionKey, info: bytes) -> bytes:
    """HPKE-seal ``content_key`` to ``recipient``; ``info`` binds the context."""
    return p.HPKE_SUITE.encrypt(content_key, recipient._key, info=info)


def unwrap(wrapped: bytes, key: DecryptionKey, info: bytes) -> bytes:
    """Open a wrap made by :func:`wrap`. Raises :class:`DecryptionError`."""
    if len(wrapped) != WRAP_BYTES:
        raise DecryptionError()
    try:
        content_key = p.HPKE_SUITE.decrypt(wrapped, key._key, info=info)
    except Exception as exc:  # pyca raises several types; all mean the same here
        raise DecryptionError() from exc
    if len(content_key) != CONTENT_KEY_BYTES:
        raise DecryptionError()
    return content_key


def sign(key: SigningKey, message: bytes) -> bytes:
    """An Ed25519 signature (64 bytes) over ``message``."""
    return key._key.sign(message)


def verify(key: VerifyKey, signature: bytes, message: bytes) -> None:
    """Check an Ed25519 signature. Raises :class:`SignatureError`."""
    try:
        key._key.verify(signature, message)
    except p.InvalidSignature as exc:
        raise SignatureError("signature does not verify") from exc


def part_key(content_key: bytes, index: int) -> bytes:
    """The STREAM key of segment ``index`` (0 is the sealed header, then the parts)."""
    return p.hkdf_sha256(content_key, PART_KEY_LABEL + index.to_bytes(4, "big"))


def chunk_count(plaintext_bytes: int) -> int:
    """How many chunks a segment of ``plaintext_bytes`` has (never 0: empty is one empty chunk)."""
    return max(1, -(-plaintext_bytes // CHUNK_BYTES))


def ciphertext_size(plaintext_bytes: int) -> int:
    """The exact ciphertext length of a segment of ``plaintext_bytes``."""
    return plaintext_bytes + TAG_BYTES * chunk_count(plaintext_bytes)


def plaintext_size(ciphertext_bytes: int) -> int:
    """Invert :func:`ciphertext_size`. Raises :class:`ValueError` for impossible lengths."""
    if ciphertext_bytes < TAG_BYTES:
        raise ValueError("segment shorter than one tag")
    full, rest = divmod(ciphertext_bytes, CHUNK_CIPHERTEXT_BYTES)
    if rest == 0:
        return full * CHUNK_BYTES
    if rest < TAG_BYTES or (rest == TAG_BYTES and full > 0):
        # Only a wholly empty segment may end in an empty chunk.
        raise ValueError("segment length is not a whole number of chunks")
    return full * CHUNK_BYTES + rest - TAG_BYTES


def _nonce(counter: int, last: bool) -> bytes:
    if counter >= MAX_CHUNKS:
        raise ValueError("too many chunks in one segment")
    return counter.to_bytes(11, "big") + (_LAST if last else _NOT_LAST)


class StreamSealer:
    """Seals the chunks of one segment, in order."""

    def __init__(self, key: bytes) -> None:
        self._aead = p.ChaCha20Poly1305(key)
        self._counter = 0
        self._done = False

    def seal(self, chunk: bytes | memoryview, *, last: bool) -> bytes:
        """Seal the next chunk: exactly CHUNK_BYTES unless ``last``."""
        if self._done:
            raise ValueError("segment already finished")
        if len(chunk) > CHUNK_BYTES or (not last and len(chunk) != CHUNK_BYTES):
            raise ValueError("only the last chunk may be short")
        if last and len(chunk) == 0 and self._counter > 0:
            raise ValueError("an empty last chunk is only for an empty segment")
        out = self._aead.encrypt(_nonce(self._counter, last), chunk, None)
        self._counter += 1
        self._done = last
        return out


class StreamOpener:
    """Opens the chunks of one segment, in order. Raises :class:`DecryptionError`."""

    def __init__(self, key: bytes) -> None:
        self._aead = p.ChaCha20Poly1305(key)
        self._counter = 0
        self._done = False

    def open(self, chunk: bytes | memoryview, *, last: bool) -> bytes:
        if self._done:
            raise DecryptionError()
        try:
            out = self._aead.decrypt(_nonce(self._counter, last), chunk, None)
        except (p.InvalidTag, ValueError) as exc:
            raise DecryptionError() from exc
        self._counter += 1
        self._done = last
        return out

    @property
    def finished(self) -> bool:
        return self._done


def seal_segment(key: bytes, plaintext: bytes) -> bytes:
    """Seal a whole small segment held in memory (the sealed header)."""
    sealer = StreamSealer(key)
    n = chunk_count(len(plaintext))
    view = memoryview(plaintext)
    return b"".join(
        sealer.seal(view[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES], last=i == n - 1)
        for i in range(n)
    )


def open_segment(key: bytes, ciphertext: bytes) -> bytes:
    """Open a whole small segment held in memory. Raises :class:`DecryptionError`."""
    try:
        n = chunk_count(plaintext_size(len(ciphertext)))
    except ValueError as exc:
        raise DecryptionError() from exc
    opener = StreamOpener(key)
    view = memoryview(ciphertext)
    step = CHUNK_CIPHERTEXT_BYTES
    return b"".join(opener.open(view[i * step : (i + 1) * step], last=i == n - 1) for i in range(n))
