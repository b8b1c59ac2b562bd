"""Every topic of vaxflow, declared once: name, partitions, key, retention, cleanup, sizes, who writes
and who reads it.

This is a public interface (brief: Conventions): producers outside vaxflow write to the raw
topic, operators replay these topics. Change it only with a CATALOGUE_VERSION bump and a note
in docs/decisions/. `vaxflow topics ensure` applies it and reports drift.
"""

from dataclasses import dataclass, field, replace
from typing import Final

# 3: redrive ledger (decision 0009); 4: valid values are file rows (0011); 5: replication from
# settings, writers/readers per worker principal for ACLs (0017); 6: ready keyed by batch key so a
# key's files keep window order, the batcher's identity changelog, the batcher writes rejected, acks
# carry unreadable acknowledgements (kind `unreadable`, optional `content`) (0018); 7: valid records
# carry an event's extended-attribute rows (header vaxflow.extended), ready/sent/acks hold
# extended-attribute files beside vaccination files, acks kind `Delivered` (0020)
CATALOGUE_VERSION: Final[int] = 7

DAY_MS: Final[int] = 24 * 60 * 60 * 1000
MIB: Final[int] = 1024 * 1024



@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as vaxflow needs it to be."""

    name: str
    partitions: int
    key: str
    value: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"
    max_message_bytes: int = 1 * MIB
    extra: dict[str, str] = field(default_factory=dict)
    # The worker principals that may write and read it (topics/access.py turns them into ACLs);
    # `producers`/`consumers` above also name people and outside systems, these only principals.
    writers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()

    def configs(self, min_insync_replicas: int = 1) -> dict[str, str]:
        """The topic-level configs vaxflow manages (others are left to the cluster's defaults).

        `min.insync.replicas` is the cluster's durability rule for acks=all writes: with 2 of 3,
        one broker down still takes writes and an acknowledged write survives a second failure.
        """
        cfg = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(min_insync_replicas),
        }
        cfg.update(self.extra)
        return cfg


RAW = TopicSpec(
    name="vaccination.events.raw",
    partitions=6,
    key="VACCINE_TYPE|SENDER_ODS (producers should set it; validator does not rely on it)",
    value="JSON event envelope (docs/event-contract.md)",
    producers=("gateway", "filesource", "external source systems"),
    consumers=("validator",),
    retention_ms=14 * DAY_MS,
    max_message_bytes=1 * MIB,
    writers=("gateway", "filesource"),
    readers=("validator", "ops"),
)
VALID = TopicSpec(
    name="vaccination.events.valid",
    partitions=6,
    key="VACCINE_TYPE|SENDER_ODS",
    value="the event's canonical file row (schemas.batchfile.render_row), header vaxflow.origin; header"
    " vaxflow.extended with its extended-attribute rows when it has any (v7)",
    producers=("validator",),
    consumers=("batcher",),
    retention_ms=14 * DAY_MS,
    writers=("validator",),
    readers=("batcher", "ops"),
)
REJECTED = TopicSpec(
    name="vaccination.events.rejected",
    partitions=3,
    key="SENDER_ODS (or empty when undecodable)",
    value="Rejection: original bytes + reasons; Connect-style vaxflow.dlq.* headers",
    producers=("validator", "filesource", "batcher (repeats of a remembered event, undecodable valid records)"),
    consumers=("ops redrive", "sender feedback"),
    retention_ms=30 * DAY_MS,
    max_message_bytes=2 * MIB,
    writers=("validator", "filesource", "batcher"),
    readers=("ops",),
)
READY = TopicSpec(
    name="vaccination.batches.ready",
    partitions=3,
    key="VACCINE_TYPE|SENDER_ODS (the batch key: one key's files stay in one partition, in window order)",
    value="ReadyFile: name, content (bytes), rows, origins covered; an extended-attribute file"
    " (Vaccination_Extended_Attributes_…) follows the vaccination file of its part, same key (v7)",
    producers=("batcher",),
    consumers=("uploader",),
    retention_ms=30 * DAY_MS,
    max_message_bytes=32 * MIB,
    writers=("batcher",),
    readers=("uploader", "ops"),
)
SENT = TopicSpec(
    name="vaccination.batches.sent",
    partitions=3,
    key="file name",
    value="SentReceipt: MESH message id, file name, origins covered (the sent-files ledger)",
    producers=("uploader",),
    consumers=("uploader (restart)", "batcher (replay guard)", "ackreader", "ops"),
    cleanup_policy="compact",
    retention_ms=-1,
    max_message_bytes=8 * MIB,
    writers=("uploader",),
    readers=("uploader", "batcher", "ackreader", "ops"),
)
DEADLETTER = TopicSpec(
    name="vaccination.batches.deadletter",
    partitions=3,
    key="file name",
    value="ReadyFile + failure (HTTP status, body, attempts); vaxflow.dlq.* headers",
    producers=("uploader",),
    consumers=("ops redrive",),
    retention_ms=30 * DAY_MS,
    max_message_bytes=32 * MIB,
    writers=("uploader",),
    readers=("ops",),
)
ACKS = TopicSpec(
    name="vaccination.acks",
    partitions=3,
    key="batch file name",
    value="AckOutcome: per-file (InfAck) and per-row (BusAck, BusAckReport) outcomes linked to origins;"
    " for an extended-attribute file, which NHS England never acknowledges when it accepts it, kind"
    " `Delivered` (MESH tracking: the recipient acknowledged the message; mesh_message_id is the sent"
    " message's) or `Undelivered` (MESH gave up); an InfAck failure for it overrides Delivered; kind"
    " `unknown` for a message that is no acknowledgement, `unreadable` (with the bytes) for one that"
    " could not be read",
    producers=("ackreader",),
    consumers=("ops", "sender feedback", "ackreader (settles extended-attribute files)"),
    retention_ms=30 * DAY_MS,
    max_message_bytes=8 * MIB,
    writers=("ackreader",),
    readers=("ops", "ackreader"),
)

VALIDATOR_STATE = TopicSpec(
    name="vaccination.validator.state",
    partitions=RAW.partitions,  # state of raw partition P lives in partition P
    key="raw-topic partition number",
    value="ValidatorState: processed_upto (replay guard)",
    producers=("validator",),
    consumers=("validator (on assignment)", "ops replay"),
    cleanup_policy="compact",
    retention_ms=-1,
    writers=("validator",),
    readers=("validator",),
)
BATCHER_STATE = TopicSpec(
    name="vaccination.batcher.state",
    partitions=VALID.partitions,  # state of valid partition P lives in partition P
    key="valid-topic partition number",
    value="BatcherState: watermark, emitted ranges, window bookkeeping (replay guard)",
    producers=("batcher",),
    consumers=("batcher (on assignment)", "ops replay"),
    cleanup_policy="compact",
    retention_ms=-1,
    max_message_bytes=8 * MIB,
    writers=("batcher",),
    readers=("batcher",),
)
BATCHER_IDENTITIES = TopicSpec(
    name="vaccination.batcher.identities",
    partitions=VALID.partitions,  # identities seen in valid partition P live in partition P
    key="8-byte hash of UNIQUE_ID_URI|UNIQUE_ID|ACTION_FLAG",
    value="RememberedIdentity: content digest, origin and valid offset of the first submission, when seen",
    producers=("batcher",),
    consumers=("batcher (on assignment)",),
    # compact keeps one record per identity; delete forgets identities older than the horizon
    # (VAXFLOW_DEDUPE_HORIZON_DAYS; `topics ensure` sets retention.ms from it)
    cleanup_policy="compact,delete",
    retention_ms=36 * DAY_MS,  # the default horizon of 35 days + 1 (catalogue_for)
    extra={"segment.ms": str(DAY_MS)},
    writers=("batcher",),
    readers=("batcher",),
)

SOURCE_FILES = TopicSpec(
    name="vaccination.sources.files",
    partitions=1,
    key="sha256 of the handed-in file's bytes (hex)",
    value="SourceFile: file name, sha256, rows published and rejected (processed-files ledger, docs/decisions/0006)",
    producers=("filesource",),
    consumers=("filesource (start-up, replay guard)", "ops"),
    cleanup_policy="compact",
    retention_ms=-1,
    writers=("filesource",),
    readers=("filesource",),
)

REDRIVE_LEDGER = TopicSpec(
    name="vaccination.redrive.ledger",
    partitions=1,
    key="'{dead-letter topic}:{partition}:{offset}' of a redriven dead letter, or 'resend:{new file name}'",
    value="RedriveEntry: what an operator re-submitted, where to, when (docs/decisions/0009)",
    producers=("ops redrive", "ops resend", "ops replay --resend"),
    consumers=("ops redrive (skips what is recorded)", "ops resend (names in use)", "ops dashboard"),
    cleanup_policy="compact",
    retention_ms=-1,
    writers=(),
    readers=("ops",),
)

CATALOGUE: Final[tuple[TopicSpec, ...]] = (
    RAW,
    VALID,
    REJECTED,
    READY,
    SENT,
    DEADLETTER,
    ACKS,
    VALIDATOR_STATE,
    BATCHER_STATE,
    BATCHER_IDENTITIES,
    SOURCE_FILES,
    REDRIVE_LEDGER,
)


def by_name(name: str) -> TopicSpec:
    """Look a topic up by its catalogue name (without namespace)."""
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(name)


def catalogue_for(*, dedupe_horizon_days: int) -> tuple[TopicSpec, ...]:
    """The catalogue with the identity changelog kept for the batcher's dedupe horizon plus a day
    (its records are deleted a segment at a time, so they may outlive the horizon by segment.ms;
    one more day keeps the topic from forgetting an identity the batcher still remembers)."""
    retention = (dedupe_horizon_days + 1) * DAY_MS
    return tuple(
        replace(spec, retention_ms=retention) if spec.name == BATCHER_IDENTITIES.name else spec for spec in CATALOGUE
    )
