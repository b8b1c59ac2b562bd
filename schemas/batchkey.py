"""The batch key: what vaxflow batches by, (vaccine type, sender ODS code), and its form as a Kafka key.

The raw and valid topics are keyed `TYPE|ODS` so that one batch key always lands on one
partition (topics/catalogue.py): the batcher's windows for a key then live in one process, and
its files reach MESH in window order. Every producer builds the key here and the batcher reads it
back here, so the two can never disagree on the form.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Final

SEPARATOR: Final = "|"
# The canonical form the validator writes: upper-case letters and digits on both sides.
_CANONICAL: Final = re.compile(rb"([0-9A-Z]{1,20})\|([0-9A-Z]{1,12})")


def encode_key(vaccine_type: str, sender_ods: str) -> bytes:
    """`TYPE|ODS` as the record key; the parts as given (the gateway upper-cases raw input first)."""
    return f"{vaccine_type}{SEPARATOR}{sender_ods}".encode()


@functools.lru_cache(maxsize=65536)  # a deployment has a few hundred (type, sender) keys
def decode_key(key: bytes | None) -> tuple[str, str]:
    """(vaccine type, sender) of a canonical valid-topic key; ValueError for anything else."""
    match = _CANONICAL.fullmatch(key or b"")
    if match is None:
        raise ValueError("valid record without a VACCINE_TYPE|SENDER_ODS key")
    return match[1].decode(), match[2].decode()


def local_id_for(file_name: str, content: bytes) -> str:
    """A file's MESH `mex-localid`: the same for the same name and bytes, so that after a crash
    between upload and receipt the uploader recognises its own message in MESH tracking
    (docs/decisions/0007-uploader-exactly-once.md)."""
    return "vxf-" + hashlib.sha256(file_name.encode() + b"\0" + content).hexdigest()[:32]
