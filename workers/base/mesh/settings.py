"""The MESH client configuration of a worker's own mailbox, from its Settings.

One place turns `VAXFLOW_MESH_*` into a `MeshConfig`, so the uploader and the ack reader cannot
disagree about URL, credentials or TLS files; and one place refuses, outside development mode, the
development stack's published passwords and shared key (a deployment that forgot to set them would
otherwise run on credentials printed in the README) for every mailbox, ours and the file source's
intake alike, naming the variable that holds the refused password. Every client it makes
handshakes again every `mesh_handshake_seconds`, as MESH asks of a mailbox at least daily.
"""

from __future__ import annotations

from workers.base.mesh.auth import MeshCredentials
from workers.base.mesh.client import MeshConfig
from workers.base.settings import DEV_MESH_PASSWORDS, DEV_MESH_SHARED_KEY, MeshSettings, SettingsError


def development_credentials_problem(
    settings: MeshSettings, password: str, variable: str = "VAXFLOW_MESH_PASSWORD"
) -> str | None:
    """Why these MESH credentials may not be used outside development mode, or None.

    Any password the development MESH publishes is refused (DEV_MESH_PASSWORDS), not only our
    sending mailbox's: the intake mailbox of the tests and demos runs on mesh-sandbox's `password`.
    """
    if settings.dev_mode:
        return None
    if password in DEV_MESH_PASSWORDS:
        return f"the MESH mailbox password is a development stack's (set {variable})"
    if settings.mesh_shared_key.get_secret_value() == DEV_MESH_SHARED_KEY:
        return "VAXFLOW_MESH_SHARED_KEY is the development stack's; set the key MESH issued"
    return None


def own_mailbox_config(settings: MeshSettings, *, allowed_workflows: frozenset[str] | None = None) -> MeshConfig:
    """Our mailbox (VAXFLOW_MESH_MAILBOX); `allowed_workflows` is the send allow-list, if any."""
    return mailbox_config(
        settings, settings.mesh_mailbox, settings.mesh_password.get_secret_value(), allowed_workflows=allowed_workflows
    )


def mailbox_config(
    settings: MeshSettings,
    mailbox: str,
    password: str,
    *,
    allowed_workflows: frozenset[str] | None = None,
    variable: str = "VAXFLOW_MESH_PASSWORD",
) -> MeshConfig:
    """Another mailbox of ours (the file source's intake) on the same MESH: URL, key and TLS files
    shared. `variable` is the variable the password came from, named if it is refused."""
    problem = development_credentials_problem(settings, password, variable)
    if problem is not None:
        raise SettingsError(f"refusing to use MESH mailbox {mailbox} outside development mode: {problem}")
    return MeshConfig(
        url=settings.mesh_url,
        credentials=MeshCredentials(mailbox, password, settings.mesh_shared_key.get_secret_value()),
        cert_file=settings.mesh_cert_file,
        key_file=settings.mesh_key_file,
        ca_file=settings.mesh_ca_file,
        allowed_workflows=allowed_workflows,
        chunk_size=settings.mesh_chunk_bytes,
        handshake_every=settings.mesh_handshake_seconds,
    )
