"""The ASGI app `vaxflow dev` serves: NHS Digital's mesh-sandbox with the repository's mailboxes.

mesh-sandbox 1.0.137 reads `mailboxes.jsonl` and `workflows.jsonl` only from its own package
directory; MAILBOXES_DATA_DIR holds message state, and a mailbox directory found there is
registered with the fixed password `password`. To serve our mailboxes with their own passwords
(and our workflows in its lookup endpoints) without editing site-packages, this module swaps in
a FileStore that reads those two files from the directory named by VAXFLOW_MESH_SANDBOX_CONFIG,
through FastAPI's dependency override of `get_messaging`. Everything else — routes, auth checks,
error answers — is the package's own code. Pinned to mesh-sandbox 1.0.137 (pyproject.toml); the
start-up check in `vaxflow.dev.mesh_sandbox` authenticates as a configured mailbox, so a change
in the package's internals fails loudly rather than silently serving the canned mailboxes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from mesh_sandbox import dependencies
from mesh_sandbox.api import app
from mesh_sandbox.common.messaging import Messaging
from mesh_sandbox.store.file_store import FileStore

from vaxflow.dev.mesh_sandbox import CONFIG_DIR_ENV

__all__ = ["app"]


class _ConfiguredFileStore(FileStore):  # type: ignore[misc]  # mesh-sandbox ships no type hints
    """FileStore whose mailboxes and workflows come from our config directory."""

    def initialise(self) -> None:
        # CannedStore.__init__ sets _canned_data_dir to the package's data, then calls this.
        self._canned_data_dir = os.environ[CONFIG_DIR_ENV]
        super().initialise()


@lru_cache(maxsize=1)
def _messaging() -> Any:
    config = dependencies.get_env_config()
    if config.store_mode != "file":
        raise RuntimeError(f"{__name__} serves STORE_MODE=file only, not {config.store_mode!r}")
    return Messaging(store=_ConfiguredFileStore(config, dependencies.get_logger()))


app.dependency_overrides[dependencies.get_messaging] = _messaging
