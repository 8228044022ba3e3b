"""The witness's checkpoint policy (review F5): configured apart from the policy of
/v1/timestamp, and the only one whose tokens time a checkpoint (gateway/proof/audit.py
token_checker)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from config.sections import DEFAULT_CHECKPOINT_POLICY, DEFAULT_TSA_POLICY
from config.site import ConfigError, SiteConfig, load_site_config
from crypto.random import FixedRandom
from crypto.tsa import TimeStampAuthority
from crypto.x509 import SiteCA, issue_tsa_certificate
from gateway.proof.audit import token_checker
from gateway.proof.audit_verify import NotWitnessToken
from tests.conftest import NOW


def _config(tmp_path: Path, tsa: str) -> SiteConfig:
    (tmp_path / "valise.toml").write_text(
        '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
        'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n' + tsa
    )
    return load_site_config(tmp_path, {})


def test_the_checkpoint_policy_has_a_default_and_is_configurable(tmp_path: Path) -> None:
    assert _config(tmp_path, "").tsa.checkpoint_policy == DEFAULT_CHECKPOINT_POLICY
    assert DEFAULT_CHECKPOINT_POLICY != DEFAULT_TSA_POLICY
    got = _config(tmp_path, '[tsa]\ncheckpoint_policy = "2.16.250.1.9.2"\n')
    assert got.tsa.checkpoint_policy == "2.16.250.1.9.2"


@pytest.mark.parametrize(
    ("tsa", "words"),
    [
        ('checkpoint_policy = "1.2.x"', "dotted OID"),
        (f'checkpoint_policy = "{DEFAULT_TSA_POLICY}"', "must differ"),
        (f'policy = "{DEFAULT_CHECKPOINT_POLICY}"', "must differ"),
    ],
)
def test_a_checkpoint_policy_that_timestamp_could_issue_is_refused(
    tmp_path: Path, tsa: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        _config(tmp_path, f"[tsa]\n{tsa}\n")


def test_only_a_token_under_the_checkpoint_policy_times_a_checkpoint(tmp_path: Path) -> None:
    ca = SiteCA.create(now=NOW - timedelta(days=1), rng=FixedRandom(b"cp-ca"))
    cert_key = issue_tsa_certificate(
        ca, "HQ TSA", now=NOW - timedelta(days=1), rng=FixedRandom(b"t")
    )
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    digest = hashlib.sha256(b"a checkpoint's signed bytes").digest()
    check = token_checker(tmp_path / "ca.crt", DEFAULT_CHECKPOINT_POLICY)
    assert check is not None
    witness = TimeStampAuthority(*cert_key, policy=DEFAULT_CHECKPOINT_POLICY)
    assert check(witness.issue(digest, serial=1, now=NOW), digest) == NOW
    service = TimeStampAuthority(*cert_key, policy=DEFAULT_TSA_POLICY)
    with pytest.raises(NotWitnessToken, match="not issued by HQ's witness"):
        check(service.issue(digest, serial=2, now=NOW), digest)
