"""The redrive ledger: what operators re-submitted, so that nothing is re-submitted twice by accident.

A redrive writes each re-submitted record and its ledger entry in one Kafka transaction, keyed by
the dead letter's own coordinates; a later redrive reads the ledger first and leaves recorded
coordinates alone. Resends record the new file name (`resend:{name}`), which also makes a
second resend choose another free name before the first one has reached the sent ledger.
docs/decisions/0009-replay-redrive-resend.md has the reasoning.

Every operator command uses the same transactional id per purpose, so two operators running the
same redrive at once fence each other instead of both submitting.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer

from topics.catalogue import REDRIVE_LEDGER
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import transactional_producer
from workers.base.settings import Settings, TopicSettings
from workers.base.topic_reader import read_to_end

_ENCODE = msgspec.json.Encoder()

class RedriveEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One operator re-submission."""

    kind: str
    """"rejected" (to raw), "deadletter" (to ready), "resend" (a file under a new name)."""
    source: str
    """'{topic}:{partition}:{offset}' of the dead letter, or the original file name of a resend."""
    target_topic: str
    origin: str | None = None
    file_name: str | None = None
    resend_of: str | None = None
    redrive_count: int = 1
    at: str
    operator: str


_DECODE = msgspec.json.Decoder(RedriveEntry)


def coordinates(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def entry_key(entry: RedriveEntry) -> str:
    return f"resend:{entry.file_name}" if entry.kind == "resend" else entry.source


def new_entry(**fields: object) -> RedriveEntry:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return msgspec.convert({"at": stamp, "operator": _operator(), **fields}, RedriveEntry)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def encode_entry(entry: RedriveEntry) -> bytes:
    return _ENCODE.encode(entry)


async def read_ledger(settings: Settings) -> dict[str, RedriveEntry]:
    """Every entry, by key, as of now (an empty ledger if the topic is new)."""
    out: dict[str, RedriveEntry] = {}
    for record in await read_to_end(settings, settings.topic(REDRIVE_LEDGER.name)):
        if record.key is None:
            continue
        key = record.key.decode("utf-8", "replace")
        if record.value is None:
            out.pop(key, None)
            continue
        try:
            out[key] = _DECODE.decode(record.value)
        except msgspec.DecodeError:
            continue
    return out


def ops_producer(settings: Settings, purpose: str) -> AIOKafkaProducer:
    """The transactional producer of one operator command (one id per purpose: see module doc)."""
    return transactional_producer(
        settings, settings.group(f"vaxflow-ops-{purpose}"), max_request_size=48 * 1024 * 1024, linger_ms=5
    )


def record(step: Checkpoint, settings: TopicSettings, entries: Iterable[RedriveEntry]) -> None:
    """Append entries to the caller's checkpoint, after its outputs (workers/base/checkpoint.py)."""
    topic = settings.topic(REDRIVE_LEDGER.name)
    for entry in entries:
        step.state(topic, encode_entry(entry), key=entry_key(entry).encode())
