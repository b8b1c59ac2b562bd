"""Who may do what on the cluster: one principal per worker, least privilege, from the catalogue.

A national cluster runs with ACLs on and nothing allowed by default, so every worker gets only
what its code does: the topics the catalogue says it writes and reads, its own consumer group,
and its own transactional-id prefix (a fenced or stolen id can then only ever be its own). The
CLI's admin principal is the cluster's superuser and needs no grant. `vaxflow topics acls`
prints these as `kafka-acls` commands for operators; the dev cluster applies the same list.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from topics.catalogue import CATALOGUE, TopicSpec

ROLES: Final[tuple[str, ...]] = ("gateway", "filesource", "validator", "batcher", "uploader", "ackreader", "ops")
"""The worker principals (the ops service among them: it reads, never writes)."""

GROUP_ROLES: Final[tuple[str, ...]] = ("validator", "batcher", "uploader")
"""Workers that consume in a group and write in transactions whose ids start with that group's id."""

FILESOURCE_TRANSACTIONAL_PREFIX: Final[str] = "vaxflow-filesource"
"""workers/filesource/records.transactional_id_for: one id per directory, all under this prefix."""

ResourceType = Literal["topic", "group", "transactional-id"]
Pattern = Literal["literal", "prefixed"]


@dataclass(frozen=True, slots=True)
class Grant:
    """One allow rule: a principal may do `operations` on resources named (or prefixed) `name`."""

    principal: str
    resource: ResourceType
    name: str
    pattern: Pattern
    operations: tuple[str, ...]

    def kafka_acls(self, bootstrap: str, command_config: str) -> str:
        """This grant as the `kafka-acls` command an operator runs (Kafka's own tool)."""
        words = [
            "kafka-acls.sh", "--bootstrap-server", bootstrap, "--command-config", command_config,
            "--add", "--allow-principal", self.principal,
            *(w for op in self.operations for w in ("--operation", op)),
            f"--{self.resource}", self.name, "--resource-pattern-type", self.pattern,
        ]  # fmt: skip
        return shlex.join(words)


def principal_of(role: str, prefix: str = "vaxflow-") -> str:
    """The SASL user (and so the Kafka principal) a worker runs as."""
    return f"User:{prefix}{role}"


def _topic_grants(specs: Iterable[TopicSpec], namespace: str, prefix: str) -> list[Grant]:
    grants = []
    for spec in specs:
        name = f"{namespace}.{spec.name}" if namespace else spec.name
        for role in ROLES:
            ops = (*(("Write",) if role in spec.writers else ()), *(("Read",) if role in spec.readers else ()))
            if ops:
                grants.append(Grant(principal_of(role, prefix), "topic", name, "literal", (*ops, "Describe")))
    return grants


def grants(
    groups: Mapping[str, str], *, namespace: str = "", prefix: str = "vaxflow-", specs: Iterable[TopicSpec] = CATALOGUE
) -> list[Grant]:
    """Every grant the pipeline needs, given each group role's consumer-group id (with namespace).

    A group's id is also its workers' transactional-id prefix (workers/base/partition_producers).
    The ops service only describes groups, to read their lag; it never joins one.
    """
    out = _topic_grants(specs, namespace, prefix)
    for role in GROUP_ROLES:
        who = principal_of(role, prefix)
        out.append(Grant(who, "group", groups[role], "literal", ("Read",)))
        out.append(Grant(who, "transactional-id", groups[role], "prefixed", ("Write", "Describe")))
    out.append(
        Grant(principal_of("filesource", prefix), "transactional-id", FILESOURCE_TRANSACTIONAL_PREFIX, "prefixed",
              ("Write", "Describe"))
    )  # fmt: skip
    ops = principal_of("ops", prefix)
    out.extend(Grant(ops, "group", groups[role], "literal", ("Describe",)) for role in GROUP_ROLES)
    return out
