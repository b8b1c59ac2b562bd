"""read_to_end against the real broker: a transaction committed just before the call is read.

The commit markers of a transaction reach its partitions a moment after the producer's commit
returns; a reader that took the last stable offset at that moment missed the records (seen in
CI as a redrive whose raw records were not there yet). The race depends on timing, so this
checks the guarantee over many commits rather than reproducing it on demand.
"""

from __future__ import annotations

import uuid

import pytest
from fixtures_kafka import create_topic

from workers.base.kafka import idempotent_producer, transactional_producer
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration


async def test_each_commit_is_read_right_after_it_returns(kafka_settings: Settings) -> None:
    topic = await create_topic(kafka_settings, "reader", 3)
    producer = transactional_producer(kafka_settings, f"reader-test-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        for round_ in range(1, 16):
            async with producer.transaction():
                for p in range(3):
                    await producer.send(topic, b"r%d" % round_, partition=p)
            records = await read_to_end(kafka_settings, topic)
            assert len(records) == 3 * round_, f"round {round_}: the commit just made is missing"
    finally:
        await producer.stop()


async def test_an_open_transaction_does_not_hold_the_reader(kafka_settings: Settings) -> None:
    """Records of a transaction still open are neither read nor waited for beyond the settle time."""
    topic = await create_topic(kafka_settings, "reader", 1)
    plain = idempotent_producer(kafka_settings)
    open_tx = transactional_producer(kafka_settings, f"reader-open-{uuid.uuid4().hex[:6]}")
    await plain.start()
    await open_tx.start()
    try:
        await plain.send_and_wait(topic, b"before", partition=0)
        await open_tx.begin_transaction()
        await open_tx.send_and_wait(topic, b"uncommitted", partition=0)
        await plain.send_and_wait(topic, b"after-open", partition=0)
        records = await read_to_end(kafka_settings, topic, settle=0.5)
        assert [r.value for r in records] == [b"before"]
        await open_tx.abort_transaction()
        records = await read_to_end(kafka_settings, topic)
        assert [r.value for r in records] == [b"before", b"after-open"]
    finally:
        await open_tx.stop()
        await plain.stop()
