"""One typed settings object per process, read from `VAXFLOW_*` environment variables.

pydantic-settings does the parsing so that a bad value stops the process at start-up with the
variable's name and the rule it broke, instead of failing later inside a worker loop.
"""

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.base.paths import DEFAULT_CACHE, DEFAULT_DEV_HOME


class SettingsError(Exception):
    """A `VAXFLOW_*` variable has a value the process cannot run with."""


class _VaxflowSettings(BaseSettings):
    """Every concern reads `VAXFLOW_<FIELD>` and is frozen; `Settings` is all of them at once."""

    model_config = SettingsConfigDict(env_prefix="VAXFLOW_", frozen=True, extra="ignore")

    dev_mode: bool = Field(
        default=False,
        description="The development stack: allows the development gateway token, MESH credentials and sandbox "
        "routes, plain http:// MESH and short MESH polls. Set by `vaxflow dev up` and the tests; never in production",
    )


POLL_FLOOR_SECONDS: Final = 0.1
"""No poll interval may be shorter: a zero or near-zero interval is a busy loop against the server."""
MESH_POLL_FLOOR_SECONDS: Final = 300.0
"""Outside development mode MESH mailboxes are polled no more often than every 5 minutes, as MESH asks."""
# The development stack's published credentials: refused outside development mode, printed only as these.
DEV_MESH_PASSWORD: Final = "vaxflow-dev-password"  # noqa: S105
DEV_MESH_PASSWORDS: Final = frozenset({
    DEV_MESH_PASSWORD,
    # the other mailboxes of config/mesh-sandbox/mailboxes.jsonl (a test keeps this list complete) ...
    "immunisation-dev-password", "dps-dev-password", "deadletter-dev-password",
    # ... and mesh-sandbox's canned mailboxes X26ABC1..3 (the tests' file source intake uses one)
    "password",
})  # fmt: skip
"""Every MESH mailbox password the development stack publishes: refused outside development mode for
our own mailbox and for the file source's intake mailbox alike."""
DEV_MESH_SHARED_KEY: Final = "vaxflow-dev-shared-key"
DEV_GATEWAY_TOKEN: Final = "vaxflow-dev-token"  # noqa: S105


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), where plain HTTP never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class KafkaSettings(_VaxflowSettings):
    """Where the Kafka cluster is and how the stream stages fetch from it (every client: workers/base/kafka.py)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_version: str = "4.3.1"
    kafka_heap: str = "768m"
    kafka_jvm_options: str | None = Field(
        default=None,
        description="JVM options of the local broker besides its heap, space-separated; default: G1, C1 JIT only",
    )
    fetch_min_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="A fetch waits for this much data (or fetch_max_wait_ms): fewer, larger transactions",
    )
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=5000, description="Latency bound of fetch_min_bytes")

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How every client connects: TLS (SSL), SASL, both, or neither"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="A file holding the SASL password (instead of VAXFLOW_KAFKA_SASL_PASSWORD)"
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that signs the brokers' certificates; default: the system's"
    )
    kafka_ssl_cert_file: Path | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    kafka_ssl_key_file: Path | None = Field(default=None, description="PEM key of kafka_ssl_cert_file")
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replicas of every catalogue topic (3 on a production cluster)"
    )
    kafka_min_insync_replicas: int = Field(
        default=1, ge=1, description="Replicas that must have a write before acks=all answers (2 of 3)"
    )

    @field_validator(
        "kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file", "kafka_ssl_ca_file",
        "kafka_ssl_cert_file", "kafka_ssl_key_file", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`VAXFLOW_KAFKA_SSL_CA_FILE=` means no file, not the current directory."""
        return None if value == "" else value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        """A half-configured connection is refused at start-up, not discovered by a hanging client."""
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("must be a comma-separated list of host:port")
        return value

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])


def kafka_security_problems(s: KafkaSettings) -> list[str]:
    """What is missing or contradictory in the connection security settings (names as operators set them)."""
    protocol = s.kafka_security_protocol
    problems = []
    if protocol.startswith("SASL_"):
        if not s.kafka_sasl_username:
            problems.append(f"VAXFLOW_KAFKA_SASL_USERNAME is required with VAXFLOW_KAFKA_SECURITY_PROTOCOL={protocol}")
        if (s.kafka_sasl_password is None) == (s.kafka_sasl_password_file is None):
            problems.append(
                f"exactly one of VAXFLOW_KAFKA_SASL_PASSWORD and VAXFLOW_KAFKA_SASL_PASSWORD_FILE is required"
                f" with VAXFLOW_KAFKA_SECURITY_PROTOCOL={protocol}"
            )
    elif s.kafka_sasl_username or s.kafka_sasl_password or s.kafka_sasl_password_file:
        problems.append(f"SASL credentials are set but VAXFLOW_KAFKA_SECURITY_PROTOCOL={protocol} would not send them")
    tls_files = {"CA": s.kafka_ssl_ca_file, "CERT": s.kafka_ssl_cert_file, "KEY": s.kafka_ssl_key_file}
    if not protocol.endswith("SSL") and any(tls_files.values()):
        problems.append(f"TLS files are set but VAXFLOW_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS")
    if (s.kafka_ssl_cert_file is None) != (s.kafka_ssl_key_file is None):
        problems.append("VAXFLOW_KAFKA_SSL_CERT_FILE and VAXFLOW_KAFKA_SSL_KEY_FILE go together (mutual TLS)")
    files = {**{f"SSL_{k}_FILE": v for k, v in tls_files.items()}, "SASL_PASSWORD_FILE": s.kafka_sasl_password_file}
    for name, path in files.items():
        if path is not None and not path.is_file():
            problems.append(f"VAXFLOW_KAFKA_{name}: {path} is not a readable file")
    if s.kafka_min_insync_replicas > s.kafka_replication_factor:
        problems.append("VAXFLOW_KAFKA_MIN_INSYNC_REPLICAS cannot exceed VAXFLOW_KAFKA_REPLICATION_FACTOR")
    return problems


class TopicSettings(_VaxflowSettings):
    """Topic and consumer-group names: the catalogue's names under an optional namespace."""

    topic_namespace: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix for every topic name (isolates tests and tenants on one cluster).",
    )
    validator_group: str = "vaxflow-validator"
    batcher_group: str = "vaxflow-batcher"
    uploader_group: str = "vaxflow-uploader"

    def topic(self, name: str) -> str:
        """The full topic name of a catalogue topic under this process's namespace."""
        return f"{self.topic_namespace}.{name}" if self.topic_namespace else name

    def group(self, name: str) -> str:
        """A consumer group id under this process's namespace (groups are cluster-wide too)."""
        return f"{self.topic_namespace}.{name}" if self.topic_namespace else name

    def groups_by_role(self) -> dict[str, str]:
        """The consumer group of each worker that reads in a group (also its transactional-id prefix)."""
        return {
            "validator": self.group(self.validator_group),
            "batcher": self.group(self.batcher_group),
            "uploader": self.group(self.uploader_group),
        }


class WorkerSettings(_VaxflowSettings):
    """What every worker process shares: health endpoint, log level, supplier permissions, validation."""

    health_port: int | None = Field(default=None, ge=1, le=65535, description="/healthz /readyz /metrics")
    stall_seconds: float = Field(
        default=300.0, gt=0, description="/healthz turns 503 when the loop has not turned this long while it has work"
    )
    log_level: str = "INFO"
    permissions_file: Path | None = Field(default=None, description="Supplier permissions JSON; default: prod")
    validator_max_batch: int = Field(default=12000, ge=1, description="Records per poll, one txn per partition")
    native_validation: bool = Field(
        default=True, description="Use the compiled fast path for events it is sure of (decision 0014), if installed"
    )


class WindowSettings(_VaxflowSettings):
    """The batcher: windows per vaccine type and sender, the caps that split them, backpressure."""

    window_seconds: int = Field(default=3600, ge=1, description="Tumbling window length over ingestion time")
    grace_seconds: int = Field(default=60, ge=0)
    batcher_state_window_seconds: int | None = Field(
        default=None, ge=1,
        description="The window length that wrote a batcher state saved in format 1 (indexes), when it "
        "differs from window_seconds; read only to migrate such a state (workers/batcher/saved_state.py)",
    )
    max_rows_per_file: int = Field(default=20000, ge=1)
    max_bytes_per_file: int = Field(default=16 * 1024 * 1024, ge=4096)
    max_buffered_events: int = Field(default=500_000, ge=1000, description="Backpressure bound per process")
    batcher_max_records: int = Field(default=5000, ge=1, description="Records the batcher takes per poll")
    line_ending: str = Field(default="crlf", pattern="^(crlf|lf)$")
    dedupe_horizon_days: int = Field(
        default=35, ge=1, le=3650,
        description="How long the batcher remembers an event's identity to refuse a repeat (>= 30 days)",
    )


class MeshSettings(_VaxflowSettings):
    """Our MESH mailbox, the routes to NHS England's mailboxes, upload retries and acknowledgement polling."""

    mesh_url: str = Field(
        default="http://127.0.0.1:8700",
        description="https:// (plain http:// only to loopback, or anywhere in development mode)",
    )
    mesh_shared_key: SecretStr = SecretStr(DEV_MESH_SHARED_KEY)
    mesh_mailbox: str = "X26VXF001"
    mesh_password: SecretStr = SecretStr(DEV_MESH_PASSWORD)
    mesh_ca_file: Path | None = None
    mesh_cert_file: Path | None = None
    mesh_key_file: Path | None = None
    routes_file: Path | None = Field(default=None, description="Vaccine type -> MESH mailbox/workflow JSON")
    uploader_concurrency: int = Field(
        default=4, ge=1, le=32, description="MESH requests of one ready partition in flight at once"
    )
    uploader_max_waiting: int = Field(
        default=16, ge=1, le=1024,
        description="Files of one ready partition held at once (in flight or waiting); beyond it the partition pauses",
    )
    mesh_chunk_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    upload_backoff_initial_seconds: float = Field(
        default=1.0, gt=0, description="First retry wait (upper bound of its jitter); doubles per attempt"
    )
    upload_backoff_max_seconds: float = Field(
        default=60.0, gt=0, description="Cap on any single retry wait; transient failures are retried without limit"
    )
    ack_poll_seconds: float = Field(
        default=300.0, ge=POLL_FLOOR_SECONDS, description="MESH asks for >= 5 minutes (the floor outside dev mode)"
    )
    ack_match_grace_seconds: float = Field(
        default=900.0, ge=0, description="How long an ack may wait in the inbox for its file's sent receipt"
    )
    ack_delivery_horizon_seconds: float = Field(
        default=7 * 86_400.0,
        ge=60.0,
        description="Extended-attribute files sent within this long are tracked in MESH until the recipient takes "
        "them (NHS England acknowledges none it accepts); older receipts are left alone, also after a restart",
    )
    ack_tracking_per_poll: int = Field(
        default=100, ge=1, le=10_000, description="Most MESH tracking calls the ack reader makes in one poll"
    )
    mesh_handshake_seconds: float = Field(
        default=6 * 3600.0,
        ge=60.0,
        le=86_400.0,
        description="A MESH client handshakes again after this long (MESH wants one at least daily)",
    )

    @model_validator(mode="after")
    def _mesh_is_safe(self) -> Self:
        """Plain HTTP would carry the mailbox password and patient files in clear across a network."""
        url = urlsplit(self.mesh_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("VAXFLOW_MESH_URL must be an http(s):// URL with a host")
        if url.scheme == "http" and not self.dev_mode and not is_loopback_host(url.hostname):
            raise ValueError(
                "VAXFLOW_MESH_URL: plain http:// is refused except to loopback (use https://, or VAXFLOW_DEV_MODE=true "
                "for the development stack)"
            )
        if not self.dev_mode and self.ack_poll_seconds < MESH_POLL_FLOOR_SECONDS:
            raise ValueError(
                f"VAXFLOW_ACK_POLL_SECONDS must be >= {MESH_POLL_FLOOR_SECONDS:g} outside development mode (MESH asks "
                "mailboxes to be polled no more than every 5 minutes)"
            )
        return self


class GatewaySettings(_VaxflowSettings):
    """The HTTP gateway: where it listens, who may send, and its limits."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_tokens_file: Path | None = Field(
        default=None,
        description="Hashed bearer tokens -> sender ODS codes JSON, mode 0600 or stricter; required outside "
        "development mode",
    )
    gateway_dev_token: SecretStr = Field(
        default=SecretStr(DEV_GATEWAY_TOKEN),
        description="Development mode only: accepted for every sender, and only while no tokens file is set",
    )
    gateway_tls_cert_file: Path | None = Field(default=None, description="PEM certificate chain: serve HTTPS")
    gateway_tls_key_file: Path | None = Field(default=None, description="PEM key of gateway_tls_cert_file")
    gateway_header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A connection that has not sent a request's headers within this is closed"
    )
    gateway_max_connections: int = Field(
        default=200, ge=1, description="Open connections beyond this are closed at once (keep under the fd limit)"
    )
    gateway_max_inflight_per_client: int = Field(
        default=8, ge=1, description="Requests in flight per token (client) at once; more -> 429"
    )
    gateway_rate_per_client: float = Field(
        default=100.0, gt=0, description="Requests per second per token (client), sustained; more -> 429"
    )
    gateway_rate_burst: int = Field(default=200, ge=1, description="Requests per token (client) allowed in a burst")
    gateway_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    gateway_send_timeout_seconds: float = Field(default=5.0, gt=0, description="Kafka ack deadline -> 503")
    gateway_retry_after_seconds: int = Field(default=5, ge=1)
    gateway_read_timeout_seconds: float = Field(default=30.0, gt=0, description="Slow request bodies -> 408")
    gateway_max_inflight_requests: int = Field(default=32, ge=1, description="Bounds buffered bodies; more -> 503")
    gateway_idempotency_ttl_seconds: float = Field(
        default=86_400.0, gt=0, description="How long a 202 is kept for a retry with the same Idempotency-Key"
    )
    gateway_idempotency_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="Memory for remembered 202 answers (oldest dropped first)"
    )

    @field_validator("gateway_tokens_file", "gateway_tls_cert_file", "gateway_tls_key_file", mode="before")
    @classmethod
    def _gateway_empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _gateway_is_consistent(self) -> Self:
        if (self.gateway_tls_cert_file is None) != (self.gateway_tls_key_file is None):
            raise ValueError("VAXFLOW_GATEWAY_TLS_CERT_FILE and VAXFLOW_GATEWAY_TLS_KEY_FILE go together")
        for name, path in (("CERT", self.gateway_tls_cert_file), ("KEY", self.gateway_tls_key_file)):
            if path is not None and not path.is_file():
                raise ValueError(f"VAXFLOW_GATEWAY_TLS_{name}_FILE: {path} is not a readable file")
        return self


FILESOURCE_OWN_FOLDERS: Final = frozenset({"done", "rejected"})
"""The file source's folders in its drop directory (workers/filesource/records.py): never a sender's."""


class FileSettings(_VaxflowSettings):
    """Files on disk: the dev stack's home and caches, the batcher's archive, and the file source's
    directory and intake mailbox."""

    dev_home: Path = DEFAULT_DEV_HOME
    cache_dir: Path = DEFAULT_CACHE
    archive_dir: Path | None = Field(default=None, description="Archive copy of every file; default dev_home/archive")
    filesource_dir: Path | None = Field(default=None, description="Directory providers hand batch files into")
    filesource_poll_seconds: float = Field(default=5.0, ge=POLL_FLOOR_SECONDS)
    filesource_settle_seconds: float = Field(
        default=2.0, ge=0, description="A file must be unmodified this long before it is read"
    )
    filesource_max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    filesource_transactional_id: str | None = Field(
        default=None, description="Default: derived from the resolved filesource_dir (one writer per directory)"
    )
    filesource_mesh_mailbox: str | None = Field(
        default=None, description="An intake MESH mailbox whose messages are provider batch files (not our own)"
    )
    filesource_mesh_password: SecretStr | None = None
    filesource_mesh_poll_seconds: float = Field(
        default=300.0, ge=POLL_FLOOR_SECONDS, description="MESH asks for >= 5 minutes (the floor outside dev mode)"
    )
    # Sender binding (issue 17): which ODS codes a file may be named for, by where it came from.
    # None = any code (a warning at start); ["*"] = any code, deliberately (the dev stack).
    filesource_dir_senders: list[str] | None = Field(
        default=None, description='ODS codes the drop directory may submit for, JSON: ["YGM17"]; ["*"] any'
    )
    filesource_mesh_senders: dict[str, list[str]] | None = Field(
        default=None,
        description='Intake MESH mailbox (mex-from) -> the ODS codes it may submit for, JSON: {"X26PROVA": ["YGM17"]}',
    )
    filesource_subdir_senders: dict[str, list[str]] | None = Field(
        default=None,
        description="Per-sender subdirectories of the drop directory -> the ODS codes files in each may submit for, "
        'JSON: {"trust-a": ["RX1", "RX2"]}; only listed subdirectories are read',
    )

    @field_validator("filesource_subdir_senders")
    @classmethod
    def _subdirs_are_plain_names(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        """Each key is one folder directly under the drop directory, never a path or the file source's own."""
        for name in value or {}:
            # Letters, digits, - and _: never a path, hidden, or a name a batch file, a reasons file
            # or the file source's own folders (in done/ and rejected/, beside the moved files) could have.
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) or name in FILESOURCE_OWN_FOLDERS:
                raise ValueError(
                    f"{name!r} must name one folder directly under VAXFLOW_FILESOURCE_DIR: 1 to 64 letters, digits, "
                    f"- or _, not {' or '.join(sorted(FILESOURCE_OWN_FOLDERS))}"
                )
        return value

    @model_validator(mode="after")
    def _mesh_poll_floor(self) -> Self:
        if not self.dev_mode and self.filesource_mesh_poll_seconds < MESH_POLL_FLOOR_SECONDS:
            raise ValueError(
                f"VAXFLOW_FILESOURCE_MESH_POLL_SECONDS must be >= {MESH_POLL_FLOOR_SECONDS:g} outside development mode"
            )
        return self


class OpsSettings(_VaxflowSettings):
    """The ops service: lag sampling and evaluation, the dashboard (docs/decisions/0008, 0009)."""

    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=8090, ge=1, le=65535, description="Ops service: /lag /metrics / (dashboard)")
    ops_sample_seconds: float = Field(
        default=5.0, ge=POLL_FLOOR_SECONDS, description="How often the ops service samples lag"
    )
    ops_window_samples: int = Field(default=12, ge=2, description="Burrow's sliding window, in samples")
    ops_history_samples: int = Field(default=720, ge=10, description="Samples kept for the dashboard (ring buffer)")
    ops_batcher_metrics_urls: str = Field(
        default="", description="Comma-separated batcher /metrics URLs (held events, open windows); empty: omit"
    )
    ops_hold_slack_seconds: float = Field(
        default=30.0, ge=0, description="Added to window + grace before a holding batcher partition may STALL"
    )


class DevSettings(_VaxflowSettings):
    """The NHS England simulator (development and tests only: plays NHS England against the MESH sandbox)."""

    nhs_sim_mailboxes: str = Field(
        default="X26OT303,X26DPS001", description="Comma-separated sandbox mailboxes the simulator reads"
    )
    nhs_sim_mailbox_config: Path | None = Field(
        default=None, description="Sandbox mailboxes.jsonl/workflows.jsonl directory; default config/mesh-sandbox"
    )
    nhs_sim_poll_seconds: float = Field(default=1.0, ge=POLL_FLOOR_SECONDS)
    nhs_sim_log_file: Path | None = Field(default=None, description="JSON-lines record of every file received")
    nhs_sim_files_dir: Path | None = Field(default=None, description="Keep a copy of every file received here")


class Settings(
    KafkaSettings, TopicSettings, WorkerSettings, WindowSettings, MeshSettings, GatewaySettings, FileSettings,
    OpsSettings, DevSettings,
):
    """Everything a vaxflow process may be configured with: every concern above, one object per process.

    A worker's `run` gets the whole of it and hands each part of the code only the concern it
    needs (the Kafka client factory a `KafkaSettings`, the MESH client config a `MeshSettings`, ...),
    so a function's signature says which settings can change what it does. Secrets are `SecretStr`
    so that printing the settings (or a traceback that holds them) shows `**********`. Defaults are
    the development stack's; production overrides them all.
    """

    def as_environment(self) -> dict[str, str]:
        """These settings as `VAXFLOW_*` variables, to start a worker process configured the same way
        (tests, benchmarks). It holds the secrets in clear: pass it to a child, never print it."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is not None:
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                # lists and mappings are read back from the environment as JSON
                text = json.dumps(secret) if isinstance(secret, list | dict) else str(secret)
                env[f"VAXFLOW_{name.upper()}"] = text
        return env


# `VAXFLOW_*` variables that are not settings of a vaxflow process: the MESH sandbox's own
# configuration directory (read by vaxflow/dev/mesh_sandbox_app.py), and the test harness's.
NOT_SETTINGS = frozenset({"VAXFLOW_MESH_SANDBOX_CONFIG"})
NOT_SETTINGS_PREFIXES = ("VAXFLOW_TEST_",)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The `VAXFLOW_*` names in `environ` that no setting reads, each with the closest known name.

    Without this check a misspelt variable is silently ignored and its setting keeps the default,
    which for a security setting is the development value.
    """
    known = [f"VAXFLOW_{name.upper()}" for name in Settings.model_fields]
    problems = []
    for var in sorted(environ):
        if not var.startswith("VAXFLOW_") or var in known or var in NOT_SETTINGS:
            continue
        if var.startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(var, known, n=1)
        problems.append(f"  {var}: not a vaxflow setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


def load_settings() -> Settings:
    """Read and validate the environment, turning pydantic's error into one readable message."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError("unknown settings:\n" + "\n".join(unknown))
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if err["loc"]:
                var = "VAXFLOW_" + "_".join(str(p) for p in err["loc"]).upper()
                lines.append(f"  {var}: {err['msg']}")
            else:  # a rule across settings: its message names them
                lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's single settings object."""
    return load_settings()
