"""Private key files under a passphrase (crypto/keyfile.py)."""

from __future__ import annotations

import base64

import pytest

from crypto.armor import armor, load_signing_key
from crypto.errors import KeyFormatError
from crypto.keyfile import (
    BEGIN,
    SCRYPT_MAX_LOG_N,
    SCRYPT_MIN_LOG_N,
    WrongPassphrase,
    decrypt_key_file,
    encrypt_key_file,
    is_encrypted,
)
from crypto.keys import SigningKey
from crypto.x509 import generate_site_key

PASS = b"correct horse battery staple"


def test_round_trip_hides_the_key() -> None:
    key = SigningKey.generate()
    plain = armor(key)
    sealed = encrypt_key_file(plain, PASS)
    assert is_encrypted(sealed) and not is_encrypted(plain)
    assert key.seed not in sealed and base64.b64encode(key.seed) not in sealed
    assert load_signing_key(decrypt_key_file(sealed, PASS)) == key
    # A fresh salt and nonce each time.
    assert encrypt_key_file(plain, PASS) != sealed


def test_a_pkcs8_tls_key_round_trips() -> None:
    pem = generate_site_key()
    assert decrypt_key_file(encrypt_key_file(pem, PASS), PASS) == pem


def test_a_wrong_passphrase_and_a_tampered_file_say_the_same_thing() -> None:
    sealed = encrypt_key_file(armor(SigningKey.generate()), PASS)
    with pytest.raises(WrongPassphrase) as wrong:
        decrypt_key_file(sealed, b"wrong")
    lines = sealed.split(b"\n")
    raw = bytearray(base64.b64decode(b"".join(lines[1:-2])))
    raw[-1] ^= 1
    body = base64.b64encode(bytes(raw))
    tampered = b"\n".join([lines[0], body, lines[-2]]) + b"\n"
    with pytest.raises(WrongPassphrase) as altered:
        decrypt_key_file(tampered, PASS)
    assert str(wrong.value) == str(altered.value) == "the passphrase does not open this key file"


def _with_cost(sealed: bytes, log_n: int) -> bytes:
    lines = sealed.split(b"\n")
    raw = bytearray(base64.b64decode(b"".join(lines[1:-2])))
    raw[1] = log_n
    return b"\n".join([lines[0], base64.b64encode(bytes(raw)), lines[-2]]) + b"\n"


@pytest.mark.parametrize("log_n", [SCRYPT_MIN_LOG_N - 1, SCRYPT_MAX_LOG_N + 1, 0, 255])
def test_a_file_cannot_choose_a_cost_out_of_bounds(log_n: int) -> None:
    sealed = encrypt_key_file(armor(SigningKey.generate()), PASS)
    with pytest.raises(KeyFormatError, match="scrypt cost"):
        decrypt_key_file(_with_cost(sealed, log_n), PASS)


def test_the_cost_is_authenticated() -> None:
    sealed = encrypt_key_file(armor(SigningKey.generate()), PASS)
    with pytest.raises(WrongPassphrase):
        decrypt_key_file(_with_cost(sealed, SCRYPT_MIN_LOG_N + 1), PASS)


def test_malformed_inputs_are_format_errors() -> None:
    plain = armor(SigningKey.generate())
    with pytest.raises(KeyFormatError, match="empty passphrase"):
        encrypt_key_file(plain, b"")
    with pytest.raises(KeyFormatError, match="encrypted already"):
        encrypt_key_file(encrypt_key_file(plain, PASS), PASS)
    with pytest.raises(KeyFormatError, match="not an encrypted"):
        decrypt_key_file(plain, PASS)
    with pytest.raises(KeyFormatError, match="not base64"):
        decrypt_key_file(BEGIN + b"\n!!!!\n-----END VALISE ENCRYPTED PRIVATE KEY-----\n", PASS)
    with pytest.raises(KeyFormatError, match="too large"):
        decrypt_key_file(b"x" * 20000, PASS)
