"""A local Kafka cluster like production: N KRaft nodes (each broker and controller, a quorum of N)
on 127.0.0.1, plaintext or secured (SASL_SSL for clients, mutual TLS between nodes, SCRAM users,
ACLs with one principal per worker), from the same Maven jars as the single dev broker.

National services run replicated, authenticated clusters; vaxflow is proven on this one
(README "Running on a real cluster"). Credentials are development ones, made per cluster home
and kept beside it (0600): `vaxflow dev status --json` shows them, production never uses them.
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from topics.access import ROLES, grants, principal_of
from vaxflow.dev import kafka_broker
from vaxflow.dev.pki import Pki, make_pki
from workers.base.kafka import Bootstrap, admin, create_acls
from workers.base.private_files import write_private
from workers.base.settings import Settings

ADMIN_USER: Final = "admin"
USER_PREFIX: Final = "vaxflow-"
SECURITIES: Final = ("plaintext", "sasl_ssl")


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """The nodes of one local cluster and where its shared files (ids, CA, credentials) live."""

    home: Path
    nodes: tuple[kafka_broker.BrokerLayout, ...]

    @property
    def secured(self) -> bool:
        return self.nodes[0].security is not None

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def pki(self) -> Pki | None:
        security = self.nodes[0].security
        return security.pki if security is not None else None

    def password_file(self, user: str) -> Path:
        return self.home / "secrets" / f"{user}.password"

    def connection(self, user: str = ADMIN_USER) -> Bootstrap:
        """How `user` (the admin superuser by default) connects to this cluster."""
        if not self.secured or self.pki is None:
            return Bootstrap(self.bootstrap)
        return Bootstrap(
            self.bootstrap, "SASL_SSL", "SCRAM-SHA-512", user,
            kafka_sasl_password_file=self.password_file(user), kafka_ssl_ca_file=self.pki.ca_file,
        )  # fmt: skip

    def environment(self, user: str = ADMIN_USER) -> dict[str, str]:
        """`VAXFLOW_KAFKA_*` variables for a process connecting as `user` (password by file, never inline)."""
        replicas = len(self.nodes)
        env = {
            "VAXFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "VAXFLOW_KAFKA_REPLICATION_FACTOR": str(replicas),
            "VAXFLOW_KAFKA_MIN_INSYNC_REPLICAS": str(min(2, replicas)),
        }
        conn = self.connection(user)
        if self.secured:
            env |= {
                "VAXFLOW_KAFKA_SECURITY_PROTOCOL": conn.kafka_security_protocol,
                "VAXFLOW_KAFKA_SASL_MECHANISM": conn.kafka_sasl_mechanism,
                "VAXFLOW_KAFKA_SASL_USERNAME": user,
                "VAXFLOW_KAFKA_SASL_PASSWORD_FILE": str(conn.kafka_sasl_password_file),
                "VAXFLOW_KAFKA_SSL_CA_FILE": str(conn.kafka_ssl_ca_file),
            }
        return env

    def settings(self, base: Settings, user: str = ADMIN_USER) -> Settings:
        """`base` connected to this cluster as `user`."""
        conn = self.connection(user)
        replicas = len(self.nodes)
        return base.model_copy(
            update={
                "kafka_bootstrap": conn.kafka_bootstrap,
                "kafka_security_protocol": conn.kafka_security_protocol,
                "kafka_sasl_mechanism": conn.kafka_sasl_mechanism,
                "kafka_sasl_username": conn.kafka_sasl_username,
                "kafka_sasl_password_file": conn.kafka_sasl_password_file,
                "kafka_ssl_ca_file": conn.kafka_ssl_ca_file,
                "kafka_replication_factor": replicas,
                "kafka_min_insync_replicas": min(2, replicas),
            }
        )

    def credentials(self) -> dict[str, str]:
        """Every user's development password (what `vaxflow dev status --json` shows)."""
        path = self.home / "credentials.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}


def worker_user(role: str) -> str:
    return principal_of(role, USER_PREFIX).removeprefix("User:")


def _credentials(home: Path) -> dict[str, str]:
    """The cluster's users and passwords, made once (the storage is formatted with them)."""
    path = home / "credentials.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    users = [ADMIN_USER, *(worker_user(role) for role in ROLES), f"{USER_PREFIX}nobody"]
    creds = {user: secrets.token_urlsafe(18) for user in users}
    write_private(path, json.dumps(creds, indent=2).encode())
    for user, password in creds.items():
        write_private(home / "secrets" / f"{user}.password", password.encode())
    return creds


def cluster_layout(
    base: kafka_broker.BrokerLayout,
    home: Path,
    ports: list[tuple[int, int, int]],
    *,
    secured: bool,
    hosts: list[str] | None = None,
) -> ClusterLayout:
    """Nodes like `base` (version, heap, JVM), one per (client, controller, internal) port triple.

    A secured cluster gets its CA and credentials now, so that its nodes' configs can name them;
    a `nobody` user with no grants is there to show that authentication alone grants nothing.
    """
    home.mkdir(parents=True, exist_ok=True)
    names = hosts or ["127.0.0.1"] * len(ports)
    voters = ",".join(f"{i}@{names[i - 1]}:{controller}" for i, (_, controller, _) in enumerate(ports, start=1))
    security = None
    if secured:
        security = kafka_broker.BrokerSecurity(
            pki=make_pki(home / "pki", tuple(dict.fromkeys([*names, "localhost", "127.0.0.1"]))),
            internal_port=0, scram_users=_credentials(home),
            super_users=(f"User:{ADMIN_USER}",),
        )  # fmt: skip
    nodes = tuple(
        replace(
            base, home=home / f"node-{i}", port=client, controller_port=controller, node_id=i, voters=voters,
            replicas=min(3, len(ports)), host=names[i - 1],
            security=replace(security, internal_port=internal) if security is not None else None,
        )
        for i, (client, controller, internal) in enumerate(ports, start=1)
    )  # fmt: skip
    return ClusterLayout(home=home, nodes=nodes)


def cluster_id(layout: ClusterLayout) -> str:
    """One id for every node of the cluster, kept so a node formatted later joins the same cluster."""
    path = layout.home / "cluster-id"
    if not path.exists():
        layout.home.mkdir(parents=True, exist_ok=True)
        path.write_text(kafka_broker.new_cluster_id())
    return path.read_text().strip()


def start_cluster(layout: ClusterLayout) -> list[int]:
    """Start every node (running ones are kept); their pids, in node order."""
    ident = cluster_id(layout)
    return [kafka_broker.start_broker(node, ident) for node in layout.nodes]


async def wait_cluster_ready(layout: ClusterLayout, pids: list[int], timeout: float = 120.0) -> float:
    """Seconds until the admin principal sees every node registered."""
    return await kafka_broker.wait_ready(
        layout.connection(), timeout=timeout, pids=pids, brokers=len(layout.nodes)
    )


def stop_cluster(layout: ClusterLayout, timeout: float = 30.0) -> bool:
    """Stop every node at once; True if any was running.

    Together, not one by one: a node stopped last has no controller quorum left to hand its
    partitions to, and its controlled shutdown would wait out the whole timeout.
    """
    with ThreadPoolExecutor(max_workers=len(layout.nodes)) as pool:
        return any(list(pool.map(lambda node: kafka_broker.stop_broker(node, timeout), layout.nodes)))


async def grant_pipeline(layout: ClusterLayout, settings: Settings) -> int:
    """Apply the pipeline's ACLs for `settings`' namespace as the admin; returns the bindings sent."""
    if not layout.secured:
        return 0
    wanted = grants(settings.groups_by_role(), namespace=settings.topic_namespace, prefix=USER_PREFIX)
    async with admin(layout.connection()) as client:
        return await create_acls(client, wanted)



def compose_init(directory: Path, hosts: list[str]) -> ClusterLayout:
    """docker-compose's cluster profile, from this same code: a node directory per host (its
    server.properties and `kafka-storage` arguments), the CA, the credentials and password files.
    Every node listens on 9092 (clients, SASL_SSL), 9093 (controllers) and 9094 (brokers)."""
    settings = Settings()
    base = kafka_broker.BrokerLayout(
        version=settings.kafka_version, cache_dir=settings.cache_dir, home=directory, port=9092, controller_port=9093
    )
    layout = cluster_layout(base, directory, [(9092, 9093, 9094)] * len(hosts), secured=True, hosts=hosts)
    ident = cluster_id(layout)
    for node in layout.nodes:
        kafka_broker.write_config(node)
        (node.home / "format-args").write_text(" ".join(kafka_broker.format_arguments(node, ident)) + "\n")
        (node.home / "format-args").chmod(0o600)
    return layout


def main(argv: list[str] | None = None) -> int:
    """`python -m vaxflow.dev.kafka_cluster DIR HOST...`: what compose_init writes (docker-compose.yml)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    layout = compose_init(Path(args[0]), args[1:])
    print(layout.bootstrap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
