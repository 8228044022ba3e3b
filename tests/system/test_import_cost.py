"""What a ``valise`` start imports: pyasn1's RFC modules (a tenth of a second of CPU
at every start) are loaded only with the first time-stamp request, response or token
(crypto/tsa_errors.py), not by the CLI or by ``valise serve`` starting. Each test
runs a fresh interpreter (imports are per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pyasn1", "pyasn1_modules")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return [m for m in out if m.split(".")[0] in HEAVY]


@pytest.mark.parametrize(
    "statement",
    [
        "import gateway.cli.main",
        "import gateway.service.serve",
        "import crypto.tsa_verify, crypto.tsa_errors",
    ],
)
def test_starting_does_not_import_pyasn1(statement: str) -> None:
    assert _loaded_after(statement) == []


def test_the_first_token_does() -> None:
    statement = (
        "from crypto.tsa_verify import verify_token\n"
        "from crypto.tsa_errors import TimestampError\n"
        "try:\n"
        "    verify_token(b'junk', bytes(32), b'not a CA')\n"
        "except TimestampError:\n"
        "    pass"
    )
    assert "pyasn1" not in _loaded_after("import crypto.tsa_verify")
    assert _loaded_after(statement) == []  # refused before any DER is read: still none
    statement = "from crypto.tsa import request\nrequest(bytes(32), nonce=1)"
    assert "pyasn1" in _loaded_after(statement)
