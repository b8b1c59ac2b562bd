"""Messages MESH will carry but vaxflow's own client refuses to send: for the poison tests (issue 16).

`send_raw` posts one message through a MeshClient's transport, skipping `send`'s checks, so a body
can claim gzip without being gzip. `send_raw_filename` goes through http.client instead, the one
client at hand that puts header bytes on the wire as given: aiohttp encodes header values as
UTF-8 and so cannot send a `mex-filename` that is not UTF-8.
"""

from __future__ import annotations

import asyncio
import http.client
from urllib.parse import urlsplit

import msgspec

from workers.base.mesh.auth import authorization_header
from workers.base.mesh.client import OCTET_STREAM, MeshClient


async def send_raw(
    client: MeshClient, to: str, workflow_id: str, data: bytes, *, filename: str, local_id: str, gzip_claimed: bool
) -> str:
    headers = {
        "Content-Type": OCTET_STREAM,
        "mex-chunk-range": "1:1",
        "mex-to": to,
        "mex-workflowid": workflow_id,
        "mex-filename": filename,
        "mex-localid": local_id,
    }
    if gzip_claimed:
        headers["Content-Encoding"] = "gzip"
    reply = await client._request(
        "POST", f"{client._mailbox_path}/outbox", ok=(200, 202), headers=headers, data=data
    )
    message_id: str = msgspec.json.decode(reply.body)["message_id"]
    return message_id


def _post_raw_filename(
    client: MeshClient, to: str, workflow_id: str, data: bytes, filename: bytes, local_id: str
) -> str:
    cfg = client.config
    url = urlsplit(cfg.url)
    conn = http.client.HTTPConnection(url.hostname or "localhost", url.port, timeout=30)
    try:
        conn.putrequest("POST", f"/messageexchange/{cfg.credentials.mailbox_id}/outbox")
        for name, value in (
            ("Authorization", authorization_header(cfg.credentials).encode()),
            ("Accept", b"application/vnd.mesh.v2+json"),
            ("Content-Type", OCTET_STREAM.encode()),
            ("mex-to", to.encode()),
            ("mex-workflowid", workflow_id.encode()),
            ("mex-filename", filename),
            ("mex-localid", local_id.encode()),
            ("Content-Length", str(len(data)).encode()),
        ):
            conn.putheader(name, value)
        conn.endheaders(data)
        reply = conn.getresponse()
        body = reply.read()
        if reply.status not in (200, 202):
            raise AssertionError(f"raw send refused: {reply.status} {body[:300]!r}")
        message_id: str = msgspec.json.decode(body)["message_id"]
        return message_id
    finally:
        conn.close()


async def send_raw_filename(
    client: MeshClient, to: str, workflow_id: str, data: bytes, *, filename: bytes, local_id: str
) -> str:
    """One uncompressed message whose `mex-filename` is exactly `filename` (any bytes)."""
    return await asyncio.to_thread(_post_raw_filename, client, to, workflow_id, data, filename, local_id)
