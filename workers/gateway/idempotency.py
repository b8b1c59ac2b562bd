"""The `Idempotency-Key` header of POST /v1/events: a retry with the same key and body gets the
first 202 back, with the first coordinates, instead of publishing the events again.

Why it is only a convenience: the key is remembered by this gateway process, in memory, for
`gateway_idempotency_ttl_seconds`, within `gateway_idempotency_max_bytes`. A retry that reaches
another instance, or comes after a restart, publishes again, and the batcher's identity memory
(workers/batcher/identities.py) turns the second copy of each event into a `duplicate.submission`
rejection, so NHS England still gets one row. What the key adds is the caller's view: the same
answer, the same origins to match acknowledgements against, and no rejections to read past.

Only 202 answers are kept: a 400/403/413 follows from the body and comes back the same anyway,
and a 503 is exactly the answer a retry must not be given again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MAX_KEY_LENGTH: Final = 255


@dataclass(frozen=True, slots=True)
class Answer:
    """A 202 given for one key and body."""

    digest: bytes
    body: bytes
    at: float


class KeyInUse(Exception):
    """The first request with this key has not been answered yet."""


class KeyReused(Exception):
    """This key was used for a different body."""


def valid_key(value: str) -> bool:
    """1 to 255 visible ASCII characters (what common clients send: UUIDs, ULIDs, hashes)."""
    return 0 < len(value) <= MAX_KEY_LENGTH and all(33 <= ord(c) <= 126 for c in value)


def body_digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


class IdempotencyCache:
    """Answers by (client, key), oldest evicted first once over the byte budget or the TTL."""

    def __init__(self, *, ttl_seconds: float, max_bytes: int) -> None:
        self._ttl = ttl_seconds
        self._max_bytes = max_bytes
        self._answers: OrderedDict[tuple[str, str], Answer] = OrderedDict()
        self._pending: dict[tuple[str, str], bytes] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._answers)

    def _expire(self, now: float) -> None:
        while self._answers:
            slot, answer = next(iter(self._answers.items()))
            if now - answer.at < self._ttl and self._bytes <= self._max_bytes:
                return
            del self._answers[slot]
            self._bytes -= len(answer.body) + 64

    def begin(self, client: str, key: str, digest: bytes) -> bytes | None:
        """The first answer's body if this is a retry of an answered request; None if the request
        should go ahead (it is then pending until `finish` or `abandon`)."""
        self._expire(time.monotonic())
        slot = (client, key)
        answer = self._answers.get(slot)
        if answer is not None:
            if answer.digest != digest:
                raise KeyReused
            return answer.body
        if slot in self._pending:
            raise KeyInUse
        self._pending[slot] = digest
        return None

    def finish(self, client: str, key: str, body: bytes) -> None:
        slot = (client, key)
        digest = self._pending.pop(slot)
        if len(body) + 64 > self._max_bytes:
            return
        self._answers[slot] = Answer(digest, body, time.monotonic())
        self._bytes += len(body) + 64
        self._expire(time.monotonic())

    def abandon(self, client: str, key: str) -> None:
        self._pending.pop((client, key), None)
