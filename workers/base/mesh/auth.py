"""The MESH `NHSMESH` Authorization header (HMAC-SHA256 over mailbox, nonce, password and time).

MESH accepts each token for one request only and only within two hours of its own clock, so a
token is built per request with a fresh nonce; nothing here is cached or reused.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

AUTH_SCHEME = "NHSMESH"
TIMESTAMP_FORMAT = "%Y%m%d%H%M"


@dataclass(frozen=True, slots=True)
class MeshCredentials:
    """What identifies one mailbox to MESH.

    The password and the environment's shared key are left out of `repr` so that a log line, a
    traceback or `vaxflow dev status` that prints this object never shows them.
    """

    mailbox_id: str
    password: str = field(repr=False)
    shared_key: str = field(repr=False)

    def __post_init__(self) -> None:
        # ':' separates the token's parts and the server splits on it; whitespace breaks the scheme.
        if not self.mailbox_id or any(c == ":" or c.isspace() for c in self.mailbox_id):
            raise ValueError(f"invalid MESH mailbox id {self.mailbox_id!r}")


def sign(
    shared_key: str, mailbox_id: str, nonce: str, nonce_count: int, password: str, timestamp: str
) -> str:
    """The hex HMAC-SHA256 the server recomputes from its copy of the password."""
    message = f"{mailbox_id}:{nonce}:{nonce_count}:{password}:{timestamp}"
    return hmac.new(shared_key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization_header(
    credentials: MeshCredentials,
    *,
    now: datetime | None = None,
    nonce: str | None = None,
    nonce_count: int = 0,
) -> str:
    """A single-use token; `now` and `nonce` exist only so tests can pin the output."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    nonce = nonce if nonce is not None else str(uuid.uuid4())
    if ":" in nonce or nonce_count < 0:
        raise ValueError("nonce must not contain ':' and nonce_count must be >= 0")
    digest = sign(
        credentials.shared_key, credentials.mailbox_id, nonce, nonce_count, credentials.password, stamp
    )
    return f"{AUTH_SCHEME} {credentials.mailbox_id}:{nonce}:{nonce_count}:{stamp}:{digest}"
