"""The sent-files ledger reader against the real broker: rebuild, incremental catch-up, tombstones."""

from __future__ import annotations

import pytest

from schemas.pipeline import SentReceipt
from topics.catalogue import SENT
from workers.base.kafka import idempotent_producer
from workers.base.ledger import LedgerError, SentLedger, encode_receipt
from workers.base.settings import Settings

pytestmark = pytest.mark.integration


def _receipt(name: str, local_id: str) -> SentReceipt:
    return SentReceipt(
        file_name=name, local_id=local_id, message_id=f"M-{name}", mailbox_to="X26OT303",
        workflow_id="VACCINATIONS_1", vaccine_type="RSV", sender_ods="X8E5B", rows=2, bytes=10,
        sent_at="2025-01-01T00:00:00Z", origins=[(1, 5), (1, 6)],
    )


async def test_ledger_rebuilds_catches_up_and_honours_tombstones(kafka_settings: Settings) -> None:
    from support.topics import ensure

    await ensure(kafka_settings)
    topic = kafka_settings.topic(SENT.name)
    producer = idempotent_producer(kafka_settings)
    await producer.start()
    try:
        for name in ("A.csv", "B.csv"):
            await producer.send_and_wait(topic, encode_receipt(_receipt(name, f"l-{name}")), key=name.encode())
        await producer.send_and_wait(topic, b"not a receipt", key=b"C.csv")  # skipped, not fatal

        async with SentLedger(kafka_settings) as ledger, SentLedger(kafka_settings, keep_origins=False) as slim:
            assert await ledger.catch_up() == 3
            await slim.catch_up()
            assert sorted(r.file_name for r in ledger) == ["A.csv", "B.csv"]
            assert ledger.get("A.csv") == _receipt("A.csv", "l-A.csv")
            assert slim.get("A.csv") is not None
            assert slim.get("A.csv").origins == []
            assert ledger.find("a.CSV") == ledger.get("A.csv")  # the receiver reports names upper-cased
            assert ledger.by_local_id("l-B.csv") == ledger.get("B.csv")

            # An operator allows a deliberate re-send of B: a tombstone removes it.
            await producer.send_and_wait(topic, None, key=b"B.csv")
            await producer.send_and_wait(topic, encode_receipt(_receipt("D.csv", "l-D")), key=b"D.csv")
            assert await ledger.catch_up() == 2  # only what is new is read
            assert "B.csv" not in ledger
            assert "D.csv" in ledger
            assert ledger.by_local_id("l-B.csv") is None
            assert await ledger.catch_up() == 0
    finally:
        await producer.stop()


async def test_a_missing_ledger_topic_stops_the_worker(kafka_settings: Settings) -> None:
    with pytest.raises(LedgerError, match="does not exist"):
        await SentLedger(kafka_settings).start(metadata_wait=0.5)
