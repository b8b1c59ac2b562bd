"""Bearer tokens and the sender ODS codes each caller may submit events for.

A token authenticates a calling system; the sender list authorises it. Without that second step
any caller could submit events in another organisation's name, and those events would end up in a
file sent to NHS England under that organisation's ODS code. The validator's supplier permissions
still apply later (which ODS code may send which vaccine type); this is the gateway's own,
earlier question of who may speak for whom.

The tokens file (`VAXFLOW_GATEWAY_TOKENS_FILE`) is JSON and holds only SHA-256 digests of tokens:

    {"tokens": [
        {"client": "emis-feed", "token_sha256": "<hex sha256 of the token>", "senders": ["X8E5B"]},
        {"client": "test-rig", "token_sha256": "<...>", "senders": ["*"]}
    ]}

`vaxflow gateway hash-token` makes a token and its entry. `"*"` allows every sender.

- **Hashed only.** A plain `token` entry is refused (not warned about): a warning in a log nobody
  reads leaves a usable credential on disk, in backups and in config repositories.
- **SHA-256, not a password hash.** The tokens are generated (`secrets.token_urlsafe(32)`, 256 bits)
  and `hash-token` refuses anything shorter than 128 bits' worth, so there is no dictionary to
  search: a leaked digest cannot be reversed in any time a slow hash would add to. A slow hash
  (scrypt, argon2) would instead cost tens of milliseconds of CPU per request, which turns every
  unauthenticated request into a lever to exhaust the gateway.
- **Private file.** A tokens file readable or writable by group or others is refused: whoever can
  write it can grant themselves any sender.
- **Reloaded.** The file is read again on SIGHUP and when its modification time, size or inode
  change (checked at most once a second, on the next request), so a token can be revoked without a
  restart. A new file that cannot be used is logged and the previous table kept.
- **Development mode only**: with no file set and `VAXFLOW_DEV_MODE=true`, the development token
  (`VAXFLOW_GATEWAY_DEV_TOKEN`, every sender) is accepted. Outside development mode the gateway
  refuses to start without a tokens file (exit status 2, naming the setting): a misspelt variable
  must not open the gateway to a published token.

Tokens are never logged: a presented token is reduced to its SHA-256 digest and compared with
every configured digest using `hmac.compare_digest`, without stopping at the first match, so the
time taken does not tell an attacker how much of a guess was right or which entry it matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import msgspec

from workers.base.settings import GatewaySettings, SettingsError

log = logging.getLogger("vaxflow.gateway")

ANY_SENDER: Final = "*"
DEV_CLIENT: Final = "development"
MIN_TOKEN_CHARS: Final = 22
"""hash-token refuses shorter tokens: 22 URL-safe base64 characters are 132 bits."""
RELOAD_CHECK_SECONDS: Final = 1.0


class TokensFileError(SettingsError):
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


def hash_token(token: str) -> str:
    """The `token_sha256` of a token, as the tokens file holds it."""
    return _digest(token).hex()


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
            if entry.token is not None:
                raise TokensFileError(
                    f"{where}: plain 'token' entries are refused; store its 'token_sha256' "
                    "(`vaxflow gateway hash-token`)"
                )
            if entry.token_sha256 is None:
                raise TokensFileError(f"{where}: 'token_sha256' is required")
            try:
                digest = bytes.fromhex(entry.token_sha256)
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


class Tokens(Protocol):
    """What the gateway asks of its tokens: a TokenTable, or a TokenStore that reloads one."""

    def lookup(self, presented: str) -> Grant | None: ...


_Stamp = tuple[int, int, int]


def read_tokens_file(path: Path) -> tuple[TokenTable, _Stamp]:
    """The table in `path` and its (inode, size, mtime) stamp; refused unless a private regular file.

    Checked on the open descriptor, so what is checked is what is read. A symlink is followed (secret
    mounts, Kubernetes' among them, are symlinks to the current version) and its target checked.
    """
    where = f"VAXFLOW_GATEWAY_TOKENS_FILE: {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise TokensFileError(f"{where}: cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokensFileError(f"{where}: not a regular file")
        if info.st_mode & 0o077:
            raise TokensFileError(
                f"{where}: mode {stat.S_IMODE(info.st_mode):04o} lets group or others read or write it; "
                "chmod 600 it (whoever can write it can grant any sender)"
            )
        with open(fd, "rb", closefd=False) as file:
            data = file.read()
    finally:
        os.close(fd)
    return TokenTable.from_json(data), (info.st_ino, info.st_size, info.st_mtime_ns)


class TokenStore:
    """The tokens file's table, read again on `reload` (SIGHUP) or when the file changes."""

    def __init__(self, path: Path | None, table: TokenTable, stamp: _Stamp | None = None) -> None:
        self._path = path
        self._table = table
        self._stamp = stamp
        self._checked = time.monotonic()

    @classmethod
    def open(cls, path: Path) -> TokenStore:
        table, stamp = read_tokens_file(path)
        return cls(path, table, stamp)

    @property
    def table(self) -> TokenTable:
        return self._table

    def lookup(self, presented: str) -> Grant | None:
        self._check_changed()
        return self._table.lookup(presented)

    def _check_changed(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        try:
            info = os.stat(self._path)  # the target: a secret mount swaps a symlink to a new file
        except OSError:
            return  # being replaced, or gone: keep what we have; reload says why if asked
        if (info.st_ino, info.st_size, info.st_mtime_ns) != self._stamp:
            self.reload()

    def reload(self) -> bool:
        """Read the file again; on any problem log it and keep the previous table (never fail open)."""
        if self._path is None:
            return False
        try:
            table, stamp = read_tokens_file(self._path)
        except TokensFileError as exc:
            log.error("tokens file not reloaded; keeping the previous tokens: %s", exc)
            return False
        self._table, self._stamp = table, stamp
        log.info("gateway tokens reloaded", extra={"tokens": len(table)})
        return True


def load_tokens(settings: GatewaySettings) -> TokenStore:
    """The configured tokens; without a file, the development token in development mode only."""
    if settings.gateway_tokens_file is None:
        if not settings.dev_mode:
            raise TokensFileError(
                "VAXFLOW_GATEWAY_TOKENS_FILE is not set: the gateway needs a tokens file outside development "
                "mode (VAXFLOW_DEV_MODE); see docs/operations.md"
            )
        log.warning(
            "no VAXFLOW_GATEWAY_TOKENS_FILE: accepting only the development token, for every sender "
            "(development only, never in a real deployment)"
        )
        return TokenStore(None, TokenTable.development(settings.gateway_dev_token.get_secret_value()))
    store = TokenStore.open(Path(settings.gateway_tokens_file))
    log.info("gateway tokens loaded", extra={"tokens": len(store.table)})
    return store
