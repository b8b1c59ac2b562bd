"""`vaxflow dev up|down|status`: the local stack of real parts (Kafka broker, MESH sandbox, workers).

Everything starts detached, in its own session, with its pid, URL and log recorded in
`$VAXFLOW_DEV_HOME/stack.json`, so the stack outlives the command that started it and another
shell can stop it.
"""

from __future__ import annotations

import time
from typing import Any

from vaxflow.dev import kafka_broker
from vaxflow.dev.state import Service, alive, load_state, save_state
from vaxflow.settings import Settings


def broker_layout(settings: Settings) -> kafka_broker.BrokerLayout:
    return kafka_broker.BrokerLayout(
        version=settings.kafka_version,
        cache_dir=settings.cache_dir,
        home=settings.dev_home / "kafka",
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        heap=settings.kafka_heap,
    )


async def up_kafka(settings: Settings) -> dict[str, Any]:
    layout = broker_layout(settings)
    started = time.monotonic()
    pid = kafka_broker.start_broker(layout)
    await kafka_broker.wait_ready(layout.bootstrap, pid=pid)
    state = load_state(settings.dev_home)
    state.put(Service(name="kafka", pid=pid, url=layout.bootstrap, log=str(layout.log)))
    save_state(settings.dev_home, state)
    return {"service": "kafka", "pid": pid, "bootstrap": layout.bootstrap, "seconds": time.monotonic() - started}


def down_kafka(settings: Settings) -> bool:
    return kafka_broker.stop_broker(broker_layout(settings))


def status(settings: Settings) -> dict[str, Any]:
    """What runs and where it listens, plus the development credentials (dev stack only)."""
    state = load_state(settings.dev_home)
    services = {
        s.name: {"pid": s.pid, "running": alive(s.pid), "url": s.url, "log": s.log} for s in state.services
    }
    return {"dev_home": str(settings.dev_home), "services": services}
