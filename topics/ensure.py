"""Create missing topics and report drift in existing ones, without ever changing data silently.

Kafka cannot shrink a topic's partition count and a changed count re-maps keys to partitions,
so drift in partitions is reported, never "fixed"; config drift is reported and, only when the
caller asks for it, altered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from topics.catalogue import CATALOGUE, TopicSpec, catalogue_for


@dataclass(slots=True)
class TopicReport:
    """What `ensure` found or did for one topic."""

    name: str
    created: bool = False
    drift: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift


async def _existing(admin: AIOKafkaAdminClient) -> set[str]:
    return set(await admin.list_topics())


async def _layout(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, set[int]]]:
    """Per topic: its partition count and the replica counts its partitions have."""
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {t["topic"]: (len(t["partitions"]), {len(p["replicas"]) for p in t["partitions"]}) for t in described}


class TopicCreateError(RuntimeError):
    """The broker refused to create a catalogue topic (the error names topic and broker reason)."""


class TopicsNotReadyError(TimeoutError):
    """Created topics did not appear with a leader for every partition in time."""


def split_create_errors(response: object) -> tuple[set[str], list[str]]:
    """Split a CreateTopics response into topics that already existed and real refusals."""
    already: set[str] = set()
    refusals: list[str] = []
    for entry in getattr(response, "topic_errors", []):
        name, code = entry[0], entry[1]
        if code == 0:
            continue
        if code == TopicAlreadyExistsError.errno:
            already.add(name)
            continue
        message = entry[2] if len(entry) > 2 and entry[2] else for_code(code).message
        refusals.append(f"{name}: {message}")
    return already, refusals


async def wait_until_ready(
    admin: AIOKafkaAdminClient, partitions: dict[str, int | None], *, timeout: float = 30.0
) -> None:
    """Return once every topic is in the metadata with each partition led.

    CreateTopics answers when the controller has recorded the topic; a broker's metadata cache
    learns of it a moment later. A worker started in that moment would see "unknown topic", and a
    second ensure would try to create the topic again, so callers wait here instead of racing.
    A count of None means "whatever it was created with": a topic another client created has
    all its partitions in one metadata record, so it is ready once it has some and all are led.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = dict(partitions)
    while pending:
        described = await admin.describe_topics(list(pending))
        for topic in described:
            listed = topic["partitions"]
            led = sum(p["error_code"] == 0 and p["leader"] >= 0 for p in listed)
            want = pending[topic["topic"]]
            enough = led >= want if want is not None else bool(listed) and led == len(listed)
            if topic["error_code"] == 0 and enough:
                del pending[topic["topic"]]
        if not pending:
            return
        if loop.time() >= deadline:
            raise TopicsNotReadyError(f"topics not ready after {timeout:.0f} s: {sorted(pending)}")
        await asyncio.sleep(0.1)


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    out: dict[str, dict[str, str]] = {}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    for response in responses:
        for resource in response.resources:
            _err, _msg, _type, name, entries = resource[:5]
            out[name] = {entry[0]: entry[1] for entry in entries}
    return out


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    *,
    namespace: str = "",
    specs: Iterable[TopicSpec] = CATALOGUE,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    fix_configs: bool = False,
) -> list[TopicReport]:
    """Make the cluster match the catalogue where that is safe; report everything else.

    Replication comes from settings, not the catalogue (1/1 on one dev broker, 3/2 on a
    cluster). A replica count that differs is reported, never changed here: moving replicas is
    a partition reassignment, an operator's decision.
    """
    wanted = {(f"{namespace}.{s.name}" if namespace else s.name): s for s in specs}
    existing = await _existing(admin)
    reports = {name: TopicReport(name=name) for name in wanted}

    missing = [name for name in wanted if name not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    wanted[name].partitions,
                    replication_factor,
                    topic_configs=wanted[name].configs(min_insync_replicas),
                )
                for name in missing
            ]
        )
        already, refusals = split_create_errors(response)
        if refusals:
            raise TopicCreateError("; ".join(refusals))
        created = [name for name in missing if name not in already]
        for name in created:
            reports[name].created = True
        # Topics someone else created meanwhile are checked for drift like any other, once this
        # client's broker knows them too (else it would report "partitions: have None").
        existing |= already
        ready: dict[str, int | None] = {name: wanted[name].partitions for name in created}
        ready.update(dict.fromkeys(already))
        await wait_until_ready(admin, ready)

    present = [name for name in wanted if name in existing]
    layouts = await _layout(admin, present)
    configs = await _configs(admin, present)
    to_alter: dict[str, dict[str, str]] = {}
    for name in present:
        spec = wanted[name]
        count, replicas = layouts.get(name, (None, set()))
        if count != spec.partitions:
            reports[name].drift.append(f"partitions: want {spec.partitions}, have {count}")
        if replicas and replicas != {replication_factor}:
            have_rf = ",".join(str(r) for r in sorted(replicas))
            reports[name].drift.append(f"replication.factor: want {replication_factor}, have {have_rf}")
        have = configs.get(name, {})
        managed = spec.configs(min_insync_replicas)
        for key, value in managed.items():
            if have.get(key) != value:
                reports[name].drift.append(f"{key}: want {value}, have {have.get(key)}")
                # Legacy AlterConfigs (what aiokafka sends) replaces every override of the topic,
                # so a fix must send the whole managed set, not only the drifted keys.
                to_alter[name] = managed
    if fix_configs and to_alter:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs=cfg) for name, cfg in to_alter.items()]
        )
        for name in to_alter:
            layout_drift = ("partitions:", "replication.factor:")
            drifted = [d.split(":")[0] for d in reports[name].drift if not d.startswith(layout_drift)]
            reports[name].altered = sorted(drifted)
            reports[name].drift = [d for d in reports[name].drift if d.startswith(layout_drift)]
    return list(reports.values())


class Placement(Protocol):
    """Where the catalogue goes and how it is replicated (a part of the process settings)."""

    @property
    def topic_namespace(self) -> str: ...
    @property
    def kafka_replication_factor(self) -> int: ...
    @property
    def kafka_min_insync_replicas(self) -> int: ...
    @property
    def dedupe_horizon_days(self) -> int: ...


async def ensure_for(admin: AIOKafkaAdminClient, settings: Placement, **options: Any) -> list[TopicReport]:
    """`ensure_topics` in the settings' namespace with their replication and the identity changelog's
    retention from the dedupe horizon (what every caller wants)."""
    options.setdefault("specs", catalogue_for(dedupe_horizon_days=settings.dedupe_horizon_days))
    return await ensure_topics(
        admin,
        namespace=settings.topic_namespace,
        replication_factor=settings.kafka_replication_factor,
        min_insync_replicas=settings.kafka_min_insync_replicas,
        **options,
    )
