"""Consumer lag per group and partition: `kafka-consumer-groups` arithmetic, age, owners, held events.

lag = log end offset - committed offset (a partition never committed counts from the log start),
exactly as `kafka-consumer-groups --describe` computes it, so an operator can check one against the
other. Two figures make it readable for vaxflow:

- lag in seconds: the age of the oldest unconsumed record, i.e. of the first committed record at or
  after the committed offset. Offsets say how much is waiting; seconds say how late NHS England's
  data will be, which is what an operator is asked about.
- held: the batcher commits only the lowest offset still held by an open window, so its lag
  includes events that wait in windows on purpose; the batcher's own /metrics says how many.

`LagMonitor` samples all of this and judges each partition with vaxflow.ops.burrow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorForGroupError,
)
from prometheus_client.parser import text_string_to_metric_families

from topics.catalogue import RAW, READY, VALID
from vaxflow.ops.burrow import PartitionHistory, Policy, Sample, Status, Verdict, evaluate, group_status
from workers.base.kafka import admin_client, offsets_probe, partitions_of, reader
from workers.base.settings import OpsSettings, Settings, TopicSettings
from workers.base.startable import Startable
from workers.batcher.gauges import HELD_GAUGE, KEY_HELD_GAUGE, KEY_OPEN_GAUGE, OPEN_GAUGE

log = logging.getLogger("vaxflow.ops.lag")


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of one group, as observed at one instant."""

    group: str
    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int
    lag_seconds: float = 0.0
    pending: bool = False
    """A committed record waits at or after the committed offset (not only transaction markers)."""
    owner: str | None = None
    """client id @ host of the live member that holds the partition, None when no member does."""
    held: int | None = None
    open_windows: int | None = None

    @property
    def lag(self) -> int:
        base = self.committed if self.committed is not None else self.log_start
        return max(0, self.log_end - base)


@dataclass(frozen=True, slots=True)
class GroupMembers:
    """What `describe groups` says: state, live members and which partitions each one owns."""

    state: str
    members: int
    owners: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.members > 0


_T = TypeVar("_T")
_COORDINATOR_ERRORS = (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, CoordinatorLoadInProgressError)


async def coordinator_call(call: Callable[[], Awaitable[_T]], attempts: int = 20, delay: float = 0.25) -> _T:
    """Retry a group-coordinator request while the coordinator is moving or not there yet.

    On a fresh cluster the first group request creates `__consumer_offsets`, and until its
    partitions have leaders every coordinator lookup fails; a leader change does the same briefly.
    """
    for attempt in range(attempts):
        try:
            return await call()
        except _COORDINATOR_ERRORS:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def pipeline_groups(settings: TopicSettings) -> dict[str, str]:
    """vaxflow's consumer groups and the topic each reads."""
    return {
        settings.group(settings.validator_group): settings.topic(RAW.name),
        settings.group(settings.batcher_group): settings.topic(VALID.name),
        settings.group(settings.uploader_group): settings.topic(READY.name),
    }


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupMembers:
    """Members of one group and their partitions (one group per request: aiokafka mis-decodes a
    batch that contains an unknown group)."""
    responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for entry in response.groups:
            error_code, group_id, state, _protocol_type, _protocol, members = entry[:6]
            if group_id != group or error_code:
                continue
            owners: dict[tuple[str, int], str] = {}
            for member in members:
                client_id, client_host, assignment = member[1], member[2], member[-1]
                if not assignment:
                    continue
                try:
                    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                except Exception:  # a foreign assignor's format: owners unknown, not fatal
                    log.debug("undecodable member assignment", extra={"group": group})
                    continue
                for topic, partitions in decoded.assignment:
                    for partition in partitions:
                        owners[(topic, partition)] = f"{client_id}@{client_host.lstrip('/')}"
            return GroupMembers(state=state, members=len(members), owners=owners)
    return GroupMembers(state="Dead", members=0)


class LagProbe(Startable):
    """Long-lived clients for repeated lag samples (the ops service samples every few seconds).

    Two consumers, because the two questions need different isolation: log end offsets are read
    uncommitted, as kafka-consumer-groups reads them, while the oldest waiting record is read
    committed, as the pipeline's consumers read it. The reader keeps every partition assigned and
    paused, and resumes one at a time to fetch a single record, so it never prefetches whole topics.
    Ages are cached per committed offset: a record at a given offset never changes.
    """

    def __init__(self, settings: Settings, *, fetch_timeout: float = 1.0) -> None:
        self.settings = settings
        self.fetch_timeout = fetch_timeout
        self.admin = admin_client(settings)
        self.offsets = offsets_probe(settings)
        # One record per fetch is enough, and Kafka returns a first batch larger than this anyway.
        self.reader = reader(settings, fetch_bytes=64 * 1024)
        self._partitions: dict[str, list[int]] = {}
        self._assigned: set[TopicPartition] = set()
        self._first: dict[TopicPartition, tuple[int, int, bool, int | None]] = {}
        """tp -> (committed, last stable offset, pending, timestamp ms of the first waiting record)."""
        self._started = False

    async def start(self) -> None:
        await self.admin.start()
        await self.offsets.start()
        await self.reader.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for closer in (self.reader.stop, self.offsets.stop, self.admin.close):
            with contextlib.suppress(KafkaError, OSError, RuntimeError):
                await closer()

    async def partitions(self, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known:
            return known
        found = [tp.partition for tp in await partitions_of(self.offsets, topic)]
        if found:
            self._partitions[topic] = found
        return found

    async def probe(
        self, groups: Mapping[str, str], at: float | None = None
    ) -> dict[str, tuple[GroupMembers, list[PartitionLag]]]:
        """group -> (members, partitions), every figure taken now; ages measured against `at`."""
        at = time.time() if at is None else at
        out: dict[str, tuple[GroupMembers, list[PartitionLag]]] = {}
        for group, topic in groups.items():
            tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
            if not tps:
                out[group] = (GroupMembers(state="Unknown", members=0), [])
                continue
            committed = await coordinator_call(
                lambda: self.admin.list_consumer_group_offsets(group, partitions=tps)  # noqa: B023 - awaited at once
            )
            members = await coordinator_call(lambda: describe_group(self.admin, group))  # noqa: B023
            starts = await self.offsets.beginning_offsets(tps)
            ends = await self.offsets.end_offsets(tps)
            rows: list[PartitionLag] = []
            stable: dict[TopicPartition, int] = {}
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                row = PartitionLag(
                    group, topic, tp.partition, offset, starts[tp], ends[tp],
                    owner=members.owners.get((topic, tp.partition)),
                )
                if row.lag > 0:
                    if not stable:  # last stable offsets: what a read_committed consumer can read up to
                        stable = await self.reader.end_offsets(tps)
                    pending, timestamp_ms = await self._first_waiting(tp, row, stable[tp])
                    age = max(0.0, at - timestamp_ms / 1000) if timestamp_ms is not None else 0.0
                    row = replace(row, pending=pending, lag_seconds=age if pending else 0.0)
                rows.append(row)
            out[group] = (members, rows)
        return out

    async def _first_waiting(self, tp: TopicPartition, row: PartitionLag, stable: int) -> tuple[bool, int | None]:
        """(a committed record waits, its timestamp) for the record at or after the committed offset.

        Nothing readable lies beyond the last stable offset: records of a transaction still open
        are not waiting for this consumer yet, so they do not count as pending.
        """
        base = row.committed if row.committed is not None else row.log_start
        if base >= stable:
            return False, None
        cached = self._first.get(tp)
        if cached is not None and cached[0] == base and (cached[2] or cached[1] == stable):
            return cached[2], cached[3]
        if tp not in self._assigned:
            self._assigned.add(tp)
            self.reader.assign(sorted(self._assigned))
            self.reader.pause(*self._assigned)
        reader = self.reader
        reader.seek(tp, base)
        reader.resume(tp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fetch_timeout
        pending, timestamp = True, None
        try:
            while loop.time() < deadline:
                batch = await reader.getmany(tp, timeout_ms=50, max_records=1)
                records = batch.get(tp)
                if records:
                    timestamp = records[0].timestamp
                    break
                if await reader.position(tp) >= stable:
                    pending = False  # only transaction markers (or aborted records) are left
                    break
        finally:
            reader.pause(tp)
        if timestamp is not None or not pending:
            self._first[tp] = (base, stable, pending, timestamp)
        return pending, timestamp


async def group_lag(settings: Settings, groups: dict[str, str] | None = None) -> list[PartitionLag]:
    """One sample of every partition of `groups` (default: the pipeline's), for the demo and scripts."""
    async with LagProbe(settings) as probe:
        found = await probe.probe(groups or pipeline_groups(settings))
    return [row for _members, rows in found.values() for row in rows]


# ------------------------------------------------------------------------------ batcher metrics


@dataclass(slots=True)
class BatcherMetrics:
    """What the batchers' /metrics say: per valid partition, and per (type, sender) when exported."""

    held: dict[int, int] = field(default_factory=dict)
    open_windows: dict[int, int] = field(default_factory=dict)
    by_key: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    scraped: int = 0


def parse_batcher_metrics(text: str, into: BatcherMetrics | None = None) -> BatcherMetrics:
    """Read the batcher's gauges out of Prometheus text.

    Several batcher instances each report the partitions they own; a gauge of a partition an
    instance no longer owns can linger there, so the largest value wins (over-reporting held events
    is the safe side for the STALL rule, which they never excuse on their own).
    """
    out = into or BatcherMetrics()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == HELD_GAUGE and "partition" in s.labels:
                p = int(s.labels["partition"])
                out.held[p] = max(out.held.get(p, 0), int(s.value))
            elif s.name == OPEN_GAUGE and "partition" in s.labels:
                p = int(s.labels["partition"])
                out.open_windows[p] = max(out.open_windows.get(p, 0), int(s.value))
            elif s.name in (KEY_HELD_GAUGE, KEY_OPEN_GAUGE):
                key = (s.labels.get("vaccine_type", "?"), s.labels.get("sender_ods", "?"))
                slot = out.by_key.setdefault(key, {"held": 0, "open_windows": 0})
                name = "held" if s.name == KEY_HELD_GAUGE else "open_windows"
                slot[name] += int(s.value)
    return out


async def scrape_batchers(urls: Iterable[str], session: aiohttp.ClientSession, timeout: float = 2.0) -> BatcherMetrics:
    out = BatcherMetrics()
    for url in urls:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                response.raise_for_status()
                parse_batcher_metrics(await response.text(), out)
                out.scraped += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            out.errors.append(f"{url}: {type(exc).__name__}")
    return out


def metrics_urls(settings: OpsSettings) -> list[str]:
    return [u.strip() for u in settings.ops_batcher_metrics_urls.split(",") if u.strip()]


# ------------------------------------------------------------------------------ monitor


@dataclass(frozen=True, slots=True)
class PartitionView:
    lag: PartitionLag
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    topic: str
    members: GroupMembers
    status: Status
    partitions: list[PartitionView]

    @property
    def total_lag(self) -> int:
        return sum(p.lag.lag for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float:
        return max((p.lag.lag_seconds for p in self.partitions), default=0.0)


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    at: float
    groups: list[GroupView]
    batcher: BatcherMetrics | None

    def to_json(self) -> dict[str, Any]:
        """The shape of GET /lag and `vaxflow lag --json`."""
        return {
            "at": self.at,
            "groups": [
                {
                    "group": g.group,
                    "topic": g.topic,
                    "status": g.status.value,
                    "state": g.members.state,
                    "members": g.members.members,
                    "total_lag": g.total_lag,
                    "max_lag_seconds": round(g.max_lag_seconds, 3),
                    "partitions": [
                        {
                            "partition": p.lag.partition,
                            "committed": p.lag.committed,
                            "log_start": p.lag.log_start,
                            "log_end": p.lag.log_end,
                            "lag": p.lag.lag,
                            "lag_seconds": round(p.lag.lag_seconds, 3),
                            "pending": p.lag.pending,
                            "owner": p.lag.owner,
                            "held": p.lag.held,
                            "open_windows": p.lag.open_windows,
                            "status": p.verdict.status.value,
                            "reason": p.verdict.reason,
                            "complete": round(p.verdict.complete, 3),
                        }
                        for p in g.partitions
                    ],
                }
                for g in self.groups
            ],
            "batcher": None
            if self.batcher is None
            else {
                "held": {str(k): v for k, v in sorted(self.batcher.held.items())},
                "open_windows": {str(k): v for k, v in sorted(self.batcher.open_windows.items())},
                "by_key": [
                    {"vaccine_type": vt, "sender_ods": ods, **v} for (vt, ods), v in sorted(self.batcher.by_key.items())
                ],
                "errors": self.batcher.errors,
            },
        }


class LagMonitor(Startable):
    """Samples every group, keeps each partition's sliding window and judges it.

    `sample(at=...)` takes the sample time from the caller, so tests can space samples minutes
    apart without waiting minutes; the service passes the wall clock.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        groups: Mapping[str, str] | None = None,
        policies: Mapping[str, Policy] | None = None,
        batcher_urls: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.groups = dict(groups or pipeline_groups(settings))
        self.policies = dict(policies or default_policies(settings))
        self.batcher_group = settings.group(settings.batcher_group)
        self.batcher_urls = metrics_urls(settings) if batcher_urls is None else batcher_urls
        self.probe = LagProbe(settings)
        self.histories: dict[tuple[str, str, int], PartitionHistory] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.probe.start()
        if self.batcher_urls:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        await self.probe.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def policy(self, group: str) -> Policy:
        return self.policies.get(group, Policy(window=self.settings.ops_window_samples))

    async def sample(self, at: float | None = None) -> LagSnapshot:
        at = time.time() if at is None else at
        found = await self.probe.probe(self.groups, at)
        batcher = None
        if self._session is not None:
            batcher = await scrape_batchers(self.batcher_urls, self._session)
        views: list[GroupView] = []
        for group, (members, rows) in found.items():
            policy = self.policy(group)
            parts: list[PartitionView] = []
            for row in rows:
                if batcher is not None and group == self.batcher_group and batcher.scraped:
                    row = replace(row, held=batcher.held.get(row.partition, 0),
                                  open_windows=batcher.open_windows.get(row.partition, 0))
                key = (group, row.topic, row.partition)
                history = self.histories.get(key)
                if history is None or history.samples.maxlen != policy.window:
                    history = self.histories[key] = PartitionHistory(policy.window)
                owned = None if members.state == "Unknown" else row.owner is not None
                history.add(
                    Sample(
                        at=at, committed=row.committed, log_end=row.log_end, lag=row.lag, pending=row.pending,
                        lag_seconds=row.lag_seconds, owned=owned, held=row.held,
                    )
                )
                parts.append(PartitionView(row, evaluate(history, policy)))
            status = group_status(p.verdict.status for p in parts)
            views.append(GroupView(group, self.groups[group], members, status, parts))
        return LagSnapshot(at, views, batcher)


def default_policies(settings: Settings) -> dict[str, Policy]:
    """The batcher holds records for up to window + grace by design; every other group does not."""
    window = settings.ops_window_samples
    hold = settings.window_seconds + settings.grace_seconds + settings.ops_hold_slack_seconds
    return {
        group: Policy(window=window, hold_seconds=hold if group == settings.group(settings.batcher_group) else None)
        for group in pipeline_groups(settings)
    }
