"""Undoing a MESH message's gzip without letting its bytes decide how much memory that takes.

A few hundred KB of gzip can stand for hundreds of MiB (a 300 KB message became 300 MiB when it
was decompressed whole, issue 17). The parts are decompressed as one stream of gzip members (one
per chunk, or one stream split across chunks) with `max_length`, so at most `limit` + 1 bytes are
ever produced before the message is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

_GZIP: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer, not raw deflate or zlib
_STEP: Final = 1024 * 1024  # output per call: the growing result plus one step, never twice the result


class TooLarge(ValueError):
    """The message decompresses to more than the limit."""


def gunzip_capped(parts: Iterable[bytes], limit: int) -> bytes:
    """The concatenated gzip members in `parts`, decompressed; TooLarge past `limit` bytes.

    Raises EOFError for a stream that ends inside a member, zlib.error for one that is not gzip.
    """
    out = bytearray()
    inflater = zlib.decompressobj(_GZIP)
    in_member = False  # input fed to `inflater` since its member started
    for part in parts:
        data = part
        while data:
            out += inflater.decompress(data, min(_STEP, limit + 1 - len(out)))
            in_member = True
            if len(out) > limit:
                raise TooLarge(f"larger than {limit} bytes when decompressed")
            if inflater.eof:  # a member ended; the next one (if any) starts in unused_data
                data = inflater.unused_data
                inflater = zlib.decompressobj(_GZIP)
                in_member = False
            else:
                data = inflater.unconsumed_tail  # empty: the member goes on in the next part
    if in_member:
        raise EOFError("compressed data ended before the end-of-stream marker")
    return bytes(out)
