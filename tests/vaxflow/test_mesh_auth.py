"""The NHSMESH Authorization header, checked against independent computations of the same HMAC."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from mesh_client import AuthTokenGenerator

from vaxflow.dev.mesh_sandbox import DevMailbox, MailboxRole
from workers.base.mesh.auth import MeshCredentials, authorization_header
from workers.base.mesh.client import MeshClient, MeshConfig

CREDS = MeshCredentials("X26VXF001", "s3cret-pass", "sh4red-key")
HEADER = re.compile(
    r"^NHSMESH (?P<mailbox>X26VXF001):(?P<nonce>[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})"
    r":(?P<count>0):(?P<stamp>\d{12}):(?P<digest>[0-9a-f]{64})$"
)


def test_header_has_the_nhsmesh_shape_with_a_uuid4_nonce_and_count_zero() -> None:
    assert HEADER.match(authorization_header(CREDS))


def test_each_header_gets_a_fresh_nonce() -> None:
    nonces = {HEADER.match(authorization_header(CREDS)).group("nonce") for _ in range(50)}  # type: ignore[union-attr]
    assert len(nonces) == 50


def test_timestamp_is_utc_minutes() -> None:
    bst = timezone(timedelta(hours=1))
    header = authorization_header(CREDS, now=datetime(2025, 6, 1, 0, 30, 59, tzinfo=bst), nonce="n")
    assert header.split(":")[3] == "202505312330"


def test_digest_equals_an_independent_hmac() -> None:
    now = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    header = authorization_header(CREDS, now=now, nonce="abc", nonce_count=0)
    expected = hmac.new(b"sh4red-key", b"X26VXF001:abc:0:s3cret-pass:202501020304", hashlib.sha256).hexdigest()
    assert header == f"NHSMESH X26VXF001:abc:0:202501020304:{expected}"


def test_header_matches_nhs_englands_mesh_client() -> None:
    """Same nonce and minute as mesh-client's own generator gives the identical token."""
    theirs = AuthTokenGenerator(b"sh4red-key", "X26VXF001", "s3cret-pass").generate_token()
    m = HEADER.match(theirs)
    assert m is not None
    now = datetime.strptime(m.group("stamp"), "%Y%m%d%H%M").replace(tzinfo=UTC)
    assert authorization_header(CREDS, now=now, nonce=m.group("nonce")) == theirs


@pytest.mark.parametrize("mailbox", ["", "X26:1", "X26 1"])
def test_mailbox_ids_that_would_break_the_token_are_refused(mailbox: str) -> None:
    with pytest.raises(ValueError, match="mailbox"):
        MeshCredentials(mailbox, "p", "k")


def test_nonce_with_a_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="nonce"):
        authorization_header(CREDS, nonce="a:b")


def test_no_config_object_shows_a_secret() -> None:
    config = MeshConfig(
        url="https://mesh.example:443", credentials=CREDS, cert_file=Path("c.pem"), key_file=Path("k.pem")
    )
    dev = DevMailbox("X26VXF001", "dev", MailboxRole.SENDER, "s3cret-pass")
    for obj in (CREDS, config, MeshClient(config), dev):
        for text in (repr(obj), str(obj)):
            assert "s3cret-pass" not in text
            assert "sh4red-key" not in text
    assert "X26VXF001" in repr(config)
