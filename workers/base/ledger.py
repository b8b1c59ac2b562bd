"""The sent-files ledger: an in-memory view of the compacted topic vaccination.batches.sent.

The topic is the only durable record of "this file went to MESH" (keyed by file name, one
SentReceipt per file), so every process that needs the ledger rebuilds it from Kafka instead of
keeping local state another instance could not see (docs/architecture.md, "Scale"). The uploader and the
ack reader share this reader:

- the uploader reads it to the end at start and again on every partition assignment, because the
  partition's previous owner (another process) may have written receipts it never saw;
- the ack reader reads it before each inbox poll, to link an acknowledgement back to the file's
  origins.

Reading "to the end" means to the end offsets observed when `catch_up` starts, under
read_committed (the uploader writes receipts in transactions): a receipt committed after that
instant is picked up by the next catch-up. The reader holds one group-less consumer assigned to
every partition, so a catch-up after the first only reads what is new.

Memory: the uploader only needs names, so it keeps receipts without their origins
(`keep_origins=False`); the ack reader keeps them to map BusAck rows back to events.

`on_receipt` sees every receipt as it is applied, so a reader that needs a small index of some
receipts (the ack reader's extended-attribute files awaiting MESH delivery) builds it as the ledger
is read instead of scanning every receipt on each poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from schemas.pipeline import SentReceipt
from topics.catalogue import SENT
from workers.base.kafka import admin
from workers.base.settings import Settings
from workers.base.startable import Startable
from workers.base.topic_reader import TopicFollower

log = logging.getLogger("vaxflow.ledger")

_DECODER = msgspec.json.Decoder(SentReceipt)
_ENCODER = msgspec.json.Encoder()


class LedgerError(RuntimeError):
    """The ledger topic cannot be read (missing, or not readable to its end in time)."""


def encode_receipt(receipt: SentReceipt) -> bytes:
    return _ENCODER.encode(receipt)


async def topic_partitions(settings: Settings, topic: str, within: float = 15.0) -> set[int]:
    """The topic's partition numbers (empty if it does not exist), from the cluster's metadata.

    A consumer only learns metadata of topics it is assigned, so ask an admin client; a topic
    created moments ago may need a few metadata rounds to show its partitions.
    """
    async with admin(settings) as client:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                described = await client.describe_topics([topic])
                found = {p["partition"] for t in described if t["topic"] == topic and not t["error_code"]
                         for p in t["partitions"]}
            except KafkaError:
                found = set()
            if found or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.2)


class SentLedger(Startable):
    """File name -> SentReceipt, as the ledger topic says after the last `catch_up`.

    Use as `async with SentLedger(settings) as ledger: await ledger.catch_up()`. A tombstone
    (null value) removes a name: that is how an operator would allow a deliberate re-send.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        keep_origins: bool = True,
        topic: str | None = None,
        on_receipt: Callable[[SentReceipt], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_receipt = on_receipt
        self.topic = topic or settings.topic(SENT.name)
        self._keep_origins = keep_origins
        self._receipts: dict[str, SentReceipt] = {}
        self._by_local_id: dict[str, str] = {}
        self._follower: TopicFollower | None = None

    async def start(self, metadata_wait: float = 15.0) -> None:
        """Assign every partition of the topic, waiting up to `metadata_wait` for a just-created one."""
        partitions = await topic_partitions(self._settings, self.topic, metadata_wait)
        if not partitions:
            raise LedgerError(f"ledger topic {self.topic} does not exist (run `vaxflow topics ensure`)")
        follower = TopicFollower(
            self._settings, [self.topic], self._apply,
            # A receipt lists every origin of its file: up to the topic's 8 MiB per record.
            fetch_bytes=SENT.max_message_bytes + 1024 * 1024,
            partitions=[TopicPartition(self.topic, p) for p in sorted(partitions)],
        )
        await follower.start()
        self._follower = follower

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    @property
    def records_read(self) -> int:
        return self._follower.records_read if self._follower is not None else 0

    async def catch_up(self, timeout: float = 60.0) -> int:
        """Read every partition up to the end offsets seen now; returns the records applied.

        Concurrent callers share one read (the lock), so an assignment callback and a poll loop
        cannot interleave their positions.
        """
        follower = self._follower
        if follower is None:
            raise RuntimeError("SentLedger used before start()")
        before = follower.records_read
        try:
            await follower.catch_up(timeout)
        except TimeoutError:
            raise LedgerError(f"could not read {self.topic} to its end within {timeout:.0f}s") from None
        return follower.records_read - before

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None:
            log.warning("ledger record without key skipped", extra={"partition": record.partition,
                                                                     "offset": record.offset})
            return
        name = record.key.decode("utf-8", "replace")
        if record.value is None:
            old = self._receipts.pop(name, None)
            if old is not None:
                self._by_local_id.pop(old.local_id, None)
            return
        try:
            receipt = _DECODER.decode(record.value)
        except msgspec.DecodeError:
            log.error("undecodable ledger record skipped", extra={"partition": record.partition,
                                                                  "offset": record.offset})
            return
        if not self._keep_origins and receipt.origins:
            receipt = msgspec.structs.replace(receipt, origins=[])
        self.add(receipt)

    def add(self, receipt: SentReceipt) -> None:
        """Record a receipt this process has just written (it will also read it back later)."""
        self._receipts[receipt.file_name] = receipt
        self._by_local_id[receipt.local_id] = receipt.file_name
        if self._on_receipt is not None:
            self._on_receipt(receipt)

    def get(self, file_name: str) -> SentReceipt | None:
        return self._receipts.get(file_name)

    def find(self, file_name: str) -> SentReceipt | None:
        """Exact name first, then case-insensitively: the receiver upper-cases keys it reports on."""
        found = self._receipts.get(file_name)
        if found is not None:
            return found
        wanted = file_name.upper()
        return next((r for n, r in self._receipts.items() if n.upper() == wanted), None)

    def by_local_id(self, local_id: str) -> SentReceipt | None:
        name = self._by_local_id.get(local_id)
        return self._receipts.get(name) if name is not None else None

    def __contains__(self, file_name: object) -> bool:
        return file_name in self._receipts

    def __len__(self) -> int:
        return len(self._receipts)

    def __iter__(self) -> Iterator[SentReceipt]:
        return iter(list(self._receipts.values()))
