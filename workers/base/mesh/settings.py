"""The MESH client configuration of a worker's own mailbox, from its Settings.

One place turns `VAXFLOW_MESH_*` into a `MeshConfig`, so the uploader and the ack reader cannot
disagree about URL, credentials or TLS files.
"""

from __future__ import annotations

from workers.base.mesh.auth import MeshCredentials
from workers.base.mesh.client import MeshConfig
from workers.base.settings import MeshSettings


def own_mailbox_config(settings: MeshSettings, *, allowed_workflows: frozenset[str] | None = None) -> MeshConfig:
    """Our mailbox (VAXFLOW_MESH_MAILBOX); `allowed_workflows` is the send allow-list, if any."""
    return mailbox_config(
        settings, settings.mesh_mailbox, settings.mesh_password.get_secret_value(), allowed_workflows=allowed_workflows
    )


def mailbox_config(
    settings: MeshSettings, mailbox: str, password: str, *, allowed_workflows: frozenset[str] | None = None
) -> MeshConfig:
    """Another mailbox of ours (the file source's intake) on the same MESH: URL, key and TLS files shared."""
    return MeshConfig(
        url=settings.mesh_url,
        credentials=MeshCredentials(mailbox, password, settings.mesh_shared_key.get_secret_value()),
        cert_file=settings.mesh_cert_file,
        key_file=settings.mesh_key_file,
        ca_file=settings.mesh_ca_file,
        allowed_workflows=allowed_workflows,
        chunk_size=settings.mesh_chunk_bytes,
    )
