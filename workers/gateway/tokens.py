"""Bearer tokens and the sender ODS codes each caller may submit events for.

A token authenticates a calling system; the sender list authorises it. Without that second step
any caller could submit events in another organisation's name, and those events would end up in a
file sent to NHS England under that organisation's ODS code. The validator's supplier permissions
still apply later (which ODS code may send which vaccine type); this is the gateway's own,
earlier question of who may speak for whom.

The tokens file (`VAXFLOW_GATEWAY_TOKENS_FILE`) is JSON:

    {"tokens": [
        {"client": "emis-feed", "token_sha256": "<hex sha256 of the token>", "senders": ["X8E5B"]},
        {"client": "test-rig", "token": "<the token itself>", "senders": ["*"]}
    ]}

`token_sha256` lets the file be readable by operators without revealing usable tokens; `token`
is accepted for convenience. `"*"` allows every sender. When no file is configured, only the
development token (`VAXFLOW_GATEWAY_DEV_TOKEN`, allowed for every sender) is accepted: that
default exists for the local stack and must never be the configuration of a real deployment.

Tokens are never logged and never kept in plain text here: each is reduced to its SHA-256
digest at load time, and a presented token is compared with every configured digest using
`hmac.compare_digest` and without stopping at the first match, so the time taken does not tell
an attacker how much of a guess was right or which entry it matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from workers.base.settings import GatewaySettings

log = logging.getLogger("vaxflow.gateway")

ANY_SENDER: Final = "*"
DEV_CLIENT: Final = "development"


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message names the entry, never a token."""


class _Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    client: str
    senders: list[str]
    token: str | None = None
    token_sha256: str | None = None


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tokens: list[_Entry]


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a valid token belongs to and which senders it may submit for (upper-case ODS codes)."""

    client: str
    senders: frozenset[str]

    def allows(self, sender_ods: str) -> bool:
        return ANY_SENDER in self.senders or sender_ods.upper() in self.senders


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenTable:
    """Configured token digests and their grants; `lookup` is the only way to use them."""

    def __init__(self, entries: list[tuple[bytes, Grant]]) -> None:
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented: str) -> Grant | None:
        """The grant of `presented`, or None. Compares with every entry, in constant time each."""
        try:
            digest = _digest(presented)
        except UnicodeEncodeError:
            return None
        found: Grant | None = None
        for expected, grant in self._entries:
            if hmac.compare_digest(digest, expected):
                found = grant
        return found

    @classmethod
    def development(cls, token: str) -> TokenTable:
        return cls([(_digest(token), Grant(client=DEV_CLIENT, senders=frozenset({ANY_SENDER})))])

    @classmethod
    def from_json(cls, data: bytes) -> TokenTable:
        try:
            parsed = msgspec.json.decode(data, type=_File)
        except msgspec.DecodeError as exc:
            # msgspec's message names the JSON path and expected type, not the offending value.
            raise TokensFileError(f"tokens file is not valid: {exc}") from None
        entries: list[tuple[bytes, Grant]] = []
        seen: set[bytes] = set()
        for position, entry in enumerate(parsed.tokens, start=1):
            where = f"entry {position} ({entry.client!r})"
            if (entry.token is None) == (entry.token_sha256 is None):
                raise TokensFileError(f"{where}: give exactly one of 'token' and 'token_sha256'")
            if entry.token is not None:
                if not entry.token:
                    raise TokensFileError(f"{where}: 'token' is empty")
                digest = _digest(entry.token)
            else:
                try:
                    digest = bytes.fromhex(entry.token_sha256 or "")
                except ValueError:
                    digest = b""
                if len(digest) != hashlib.sha256().digest_size:
                    raise TokensFileError(f"{where}: 'token_sha256' must be 64 hex digits")
            if digest in seen:
                raise TokensFileError(f"{where}: the same token appears twice")
            if not entry.senders:
                raise TokensFileError(f"{where}: 'senders' is empty; list ODS codes or '*'")
            seen.add(digest)
            senders = frozenset(s.strip().upper() for s in entry.senders)
            entries.append((digest, Grant(client=entry.client, senders=senders)))
        return cls(entries)


def load_tokens(settings: GatewaySettings) -> TokenTable:
    """The configured tokens, or the development token when no file is set (and say so)."""
    if settings.gateway_tokens_file is None:
        log.warning(
            "no VAXFLOW_GATEWAY_TOKENS_FILE: accepting only the development token, for every sender "
            "(development only, never in a real deployment)"
        )
        return TokenTable.development(settings.gateway_dev_token.get_secret_value())
    table = TokenTable.from_json(Path(settings.gateway_tokens_file).read_bytes())
    log.info("gateway tokens loaded", extra={"tokens": len(table)})
    return table
