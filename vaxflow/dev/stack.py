"""`vaxflow dev up|down|status`: the local stack of real parts (Kafka broker, MESH sandbox, workers).

Everything starts detached, in its own session, with its pid, URL and log recorded in
`$VAXFLOW_DEV_HOME/stack.json`, so the stack outlives the command that started it and another
shell can stop it. Workers are started with the caller's environment, so `VAXFLOW_*` overrides
(short windows for the demo, for example) reach them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from typing import Any

from pydantic import SecretStr

from topics.access import ROLES
from topics.ensure import ensure_for
from vaxflow.dev import kafka_broker, kafka_cluster, mesh_sandbox
from vaxflow.dev.processes import alive, stop_pid
from vaxflow.dev.state import Service, StackState, load_state, save_state
from vaxflow.registry import SERVES_OWN_HEALTH, module_of
from workers.base.kafka import admin
from workers.base.mesh.settings import own_mailbox_config
from workers.base.settings import DEV_GATEWAY_TOKEN, DEV_MESH_SHARED_KEY, Settings

PIPELINE = ("gateway", "filesource", "validator", "batcher", "uploader", "ackreader", "ops")
HEALTH_BASE_PORT = 9100


class StackError(RuntimeError):
    """The stack could not be started; the message says which part and where its log is."""


def broker_layout(settings: Settings) -> kafka_broker.BrokerLayout:
    return kafka_broker.BrokerLayout(
        version=settings.kafka_version,
        cache_dir=settings.cache_dir,
        home=settings.dev_home / "kafka",
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        heap=settings.kafka_heap,
        jvm_options=kafka_broker.jvm_options(settings.kafka_jvm_options),
    )


def cluster_layout(
    settings: Settings, brokers: int = 1, security: str = "plaintext", ports: tuple[int, int] | None = None
) -> kafka_cluster.ClusterLayout:
    """The dev stack's Kafka: its one plaintext broker (the default, in dev_home/kafka), or a cluster
    of `brokers` nodes in dev_home/kafka-cluster. Node i (from 0) listens for clients on
    kafka_port + 200 i, for its controller quorum on kafka_controller_port + 200 i and, secured,
    for the other brokers on kafka_port + 200 i + 2."""
    client, controller = ports or (settings.kafka_port, settings.kafka_controller_port)
    single = dataclasses.replace(broker_layout(settings), port=client, controller_port=controller)
    if brokers == 1 and security == "plaintext":
        return kafka_cluster.ClusterLayout(home=single.home, nodes=(single,))
    node_ports = [(client + 200 * i, controller + 200 * i, client + 200 * i + 2) for i in range(brokers)]
    home = settings.dev_home / "kafka-cluster"
    return kafka_cluster.cluster_layout(single, home, node_ports, secured=security == "sasl_ssl")


def running_cluster(settings: Settings, state: StackState) -> kafka_cluster.ClusterLayout:
    """The stack's Kafka as `up` started it (whatever this shell's VAXFLOW_KAFKA_* say)."""
    return cluster_layout(settings, state.kafka_brokers, state.kafka_security, state.kafka_ports)


def sandbox_layout(settings: Settings) -> mesh_sandbox.SandboxLayout:
    port = int(settings.mesh_url.rsplit(":", 1)[1].split("/")[0])
    return mesh_sandbox.SandboxLayout(home=settings.dev_home / "mesh-sandbox", port=port)


def health_port(name: str) -> int:
    return HEALTH_BASE_PORT + list((*PIPELINE, "nhs-sim")).index(name)


def start_worker(settings: Settings, name: str, cluster: kafka_cluster.ClusterLayout | None = None) -> Service:
    logs = settings.dev_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["VAXFLOW_DEV_MODE"] = "true"  # the stack's sandbox credentials and dev token are refused otherwise
    url = {"gateway": f"http://127.0.0.1:{settings.gateway_port}", "ops": f"http://127.0.0.1:{settings.ops_port}/"}.get(
        name, ""
    )
    if name not in SERVES_OWN_HEALTH:
        env["VAXFLOW_HEALTH_PORT"] = str(health_port(name))
        url = f"http://127.0.0.1:{health_port(name)}"
    if cluster is not None and name in ROLES:  # each worker as its own principal, with only its grants
        env |= cluster.environment(kafka_cluster.worker_user(name))
    env.setdefault("VAXFLOW_DEV_HOME", str(settings.dev_home))
    env.setdefault("VAXFLOW_FILESOURCE_DIR", str(settings.filesource_dir or settings.dev_home / "inbox"))
    env.setdefault("VAXFLOW_FILESOURCE_DIR_SENDERS", '["*"]')  # the dev inbox takes files for any provider
    env.setdefault("VAXFLOW_OPS_BATCHER_METRICS_URLS", f"http://127.0.0.1:{health_port('batcher')}/metrics")
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module_of(name)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    return Service(name=name, pid=proc.pid, url=url, log=str(log_path))


async def up(
    settings: Settings, *, workers: bool = True, nhs_sim: bool = False, brokers: int = 1, security: str = "plaintext"
) -> dict[str, Any]:
    """Start (or keep) every part; idempotent: running parts are left as they are."""
    report: dict[str, Any] = {}
    state = load_state(settings.dev_home)
    if any(s.name.startswith("kafka") and alive(s.pid) for s in state.services) and (
        (state.kafka_brokers, state.kafka_security) != (brokers, security)
    ):
        raise StackError(
            f"the stack runs {state.kafka_brokers} {state.kafka_security} broker(s); `vaxflow dev down` first"
        )
    state.kafka_brokers, state.kafka_security = brokers, security
    state.kafka_ports = (settings.kafka_port, settings.kafka_controller_port)
    cluster = cluster_layout(settings, brokers, security)
    started = time.monotonic()
    try:
        pids = kafka_cluster.start_cluster(cluster)
        await kafka_cluster.wait_cluster_ready(cluster, pids)
    except kafka_broker.ProvisionError as exc:
        raise StackError(f"Kafka: {exc} (logs: {cluster.home})") from None
    for node, pid in zip(cluster.nodes, pids, strict=True):
        name = "kafka" if len(cluster.nodes) == 1 else f"kafka-{node.node_id}"
        state.put(Service(name=name, pid=pid, url=node.bootstrap, log=str(node.log)))
    report["kafka"] = {"bootstrap": cluster.bootstrap, "ready_seconds": round(time.monotonic() - started, 1)}
    admin_settings = cluster.settings(settings)

    sandbox = sandbox_layout(settings)
    started = time.monotonic()
    try:
        spid = mesh_sandbox.start_sandbox(sandbox, settings.mesh_shared_key.get_secret_value())
        await mesh_sandbox.wait_ready(own_mailbox_config(settings), pid=spid)
    except mesh_sandbox.SandboxError as exc:
        raise StackError(f"MESH sandbox: {exc} (log: {sandbox.log})") from None
    state.put(Service(name="mesh-sandbox", pid=spid, url=sandbox.url, log=str(sandbox.log)))
    report["mesh_sandbox"] = {"url": sandbox.url, "ready_seconds": round(time.monotonic() - started, 1)}

    async with admin(admin_settings) as client:
        topics = await ensure_for(client, admin_settings)
    report["acl_bindings"] = await kafka_cluster.grant_pipeline(cluster, settings)
    report["topics"] = {r.name: ("created" if r.created else "ok" if r.ok else r.drift) for r in topics}

    wanted = [*(PIPELINE if workers else ()), *(("nhs-sim",) if nhs_sim else ())]
    for name in wanted:
        existing = state.get(name)
        if existing is not None and alive(existing.pid):
            continue
        state.put(start_worker(settings, name, cluster if cluster.secured or brokers > 1 else None))
    save_state(settings.dev_home, state)
    report.update(status(settings))
    return report


def down(settings: Settings) -> dict[str, Any]:
    """Workers first (they drain and commit), then the sandbox, then the broker."""
    state = load_state(settings.dev_home)
    stopped: list[str] = []
    for service in reversed(state.services):
        if service.name.startswith("kafka") or service.name == "mesh-sandbox":
            continue
        if alive(service.pid):
            stop_pid(service.pid, 60)
            stopped.append(service.name)
    if mesh_sandbox.stop_sandbox(sandbox_layout(settings)):
        stopped.append("mesh-sandbox")
    if kafka_cluster.stop_cluster(running_cluster(settings, state)):
        stopped.append("kafka")
    state.services = []
    save_state(settings.dev_home, state)
    return {"stopped": stopped}


def status(settings: Settings) -> dict[str, Any]:
    """What runs, where it listens, and the development credentials (dev stack only)."""
    state = load_state(settings.dev_home)
    services = {
        s.name: {"pid": s.pid, "running": alive(s.pid), "url": s.url, "log": s.log} for s in state.services
    }
    dev = mesh_sandbox.load_dev_config(include_canned=False)
    cluster = running_cluster(settings, state)
    return {
        "dev_home": str(settings.dev_home),
        "kafka_bootstrap": cluster.bootstrap,
        "kafka": kafka_status(cluster, state),
        "mesh_url": settings.mesh_url,
        "gateway_url": f"http://127.0.0.1:{settings.gateway_port}/v1/events",
        "ops_url": f"http://127.0.0.1:{settings.ops_port}/",
        "services": services,
        "development_credentials": {
            "mesh_shared_key": shown_secret(settings.mesh_shared_key, DEV_MESH_SHARED_KEY),
            "mesh_mailboxes": [
                {"mailbox": m.mailbox_id, "role": str(m.role), "password": m.password} for m in dev.mailboxes
            ],
            "gateway_token": gateway_token_shown(settings),
            "gateway_token_allows": (
                "every sender (development only)" if settings.gateway_tokens_file is None else "see the tokens file"
            ),
        },
    }


MASKED = "********"


def shown_secret(secret: SecretStr, development_default: str) -> str:
    """The secret itself only when it is the published development default; anything else is masked.

    A production key configured in the shell that runs `vaxflow dev status` must not end up on a
    screen, in a terminal log or in a pasted bug report.
    """
    value = secret.get_secret_value()
    return value if value == development_default else MASKED


def gateway_token_shown(settings: Settings) -> str:
    """The development token (printed only while it is the default and no tokens file is set)."""
    if settings.gateway_tokens_file is not None:
        return f"{MASKED} (tokens file {settings.gateway_tokens_file})"
    return shown_secret(settings.gateway_dev_token, DEV_GATEWAY_TOKEN)


def kafka_status(cluster: kafka_cluster.ClusterLayout, state: StackState) -> dict[str, Any]:
    """The brokers, and for a secured cluster its CA and each principal's development credentials."""
    report: dict[str, Any] = {
        "security": state.kafka_security,
        "brokers": [{"node_id": n.node_id, "bootstrap": n.bootstrap, "log": str(n.log)} for n in cluster.nodes],
    }
    if cluster.secured and cluster.pki is not None:
        report["ca_file"] = str(cluster.pki.ca_file)
        report["sasl_mechanism"] = "SCRAM-SHA-512"
        report["principals"] = {
            user: {"password": password, "password_file": str(cluster.password_file(user))}
            for user, password in cluster.credentials().items()
        }
        report["admin_environment"] = cluster.environment()
    return report


def format_status(report: dict[str, Any]) -> str:
    lines = [f"dev home: {report['dev_home']}"]
    for name, svc in report["services"].items():
        mark = "running" if svc["running"] else "STOPPED"
        lines.append(f"  {name:<13} {mark:<8} pid {svc['pid']:<7} {svc['url']}")
    creds = report["development_credentials"]
    lines.append(f"kafka ({report['kafka']['security']}): {report['kafka_bootstrap']}")
    lines.append(f"mesh: {report['mesh_url']}   gateway: {report['gateway_url']}")
    lines.append(f"ops dashboard, /lag, /metrics: {report['ops_url']}")
    lines.append(f"gateway token ({creds['gateway_token_allows']}): {creds['gateway_token']}")
    lines.append(f"mesh shared key: {creds['mesh_shared_key']}")
    for m in creds["mesh_mailboxes"]:
        lines.append(f"  mailbox {m['mailbox']:<10} {m['role']:<13} password {m['password']}")
    return "\n".join(lines)

