"""The local stack's record of what it started, so `down` and `status` work from another shell."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Service(msgspec.Struct, kw_only=True):
    """One background process of the local stack."""

    name: str
    pid: int
    url: str
    log: str


class StackState(msgspec.Struct, kw_only=True):
    """Everything `vaxflow dev up` left running."""

    services: list[Service] = msgspec.field(default_factory=list)
    kafka_brokers: int = 1
    kafka_security: str = "plaintext"  # or "sasl_ssl" (vaxflow/dev/kafka_cluster.py)
    kafka_ports: tuple[int, int] | None = None  # first node's client and controller ports, as started

    def get(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def put(self, service: Service) -> None:
        self.services = [s for s in self.services if s.name != service.name] + [service]


def state_path(home: Path) -> Path:
    return home / "stack.json"


def load_state(home: Path) -> StackState:
    try:
        return msgspec.json.decode(state_path(home).read_bytes(), type=StackState)
    except (FileNotFoundError, msgspec.DecodeError):
        return StackState()


def save_state(home: Path, state: StackState) -> None:
    """Write atomically so a crash never leaves a half-written state file."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = state_path(home).with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(state)))
    os.replace(tmp, state_path(home))
