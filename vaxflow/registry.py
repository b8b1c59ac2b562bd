"""Who moves the data: every worker by name, in data-flow order, for `vaxflow worker NAME` and the
local stack. Each is also `python -m` its package (`workers.<name>`, `vaxflow.dev.nhs_sim`, `vaxflow.ops`).
"""

from __future__ import annotations

import importlib
from typing import Final

from workers.base.runtime import WorkerMain

# name -> module (each module has `run(settings, stop, health)`)
WORKERS: Final[dict[str, str]] = {
    "gateway": "workers.gateway.worker",
    "filesource": "workers.filesource.worker",
    "validator": "workers.validator.worker",
    "batcher": "workers.batcher.worker",
    "uploader": "workers.uploader.worker",
    "ackreader": "workers.ackreader.worker",
    "nhs-sim": "vaxflow.dev.nhs_sim.worker",
    "ops": "vaxflow.ops.service",
}

# The gateway serves /healthz, /readyz and /metrics on its own port; the others get a small one.
SERVES_OWN_HEALTH: Final = frozenset({"gateway", "ops"})


def load(name: str) -> WorkerMain:
    if name not in WORKERS:
        raise KeyError(f"unknown worker {name!r}; known: {', '.join(WORKERS)}")
    main: WorkerMain = importlib.import_module(WORKERS[name]).run
    return main


def module_of(name: str) -> str:
    return WORKERS[name].rsplit(".", 1)[0]
