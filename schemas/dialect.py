"""How a route's files are spelled on the wire: delimiter, encoding and line ending.

The NHS pipeline reads `|`-delimited UTF-8 (falling back to cp1252), but the public catalogue also
mentions ¬-delimited files without saying which (spec digest section g). Rather than guess, the
delimiter and encoding are a per-route setting (docs/architecture.md, "Files"); the default is what the
receiver is known to accept. cp1252 exists because ¬ is one byte there and some providers hand in
Windows-encoded files.
"""

from typing import Final, Literal

import msgspec

Delimiter = Literal["|", "¬"]
Encoding = Literal["utf-8", "cp1252"]
LineEnding = Literal["CRLF", "LF"]

DELIMITERS: Final[tuple[str, ...]] = ("|", "¬")
_NEWLINES: Final[dict[str, str]] = {"CRLF": "\r\n", "LF": "\n"}


class Dialect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One route's file dialect; the defaults are what NHS England's receiver is verified to read.

    CRLF is the default line ending because the known producers (Mavis, Python's csv module for the
    InfAck) use it; the receiver accepts LF as well.
    """

    delimiter: Delimiter = "|"
    encoding: Encoding = "utf-8"
    line_ending: LineEnding = "CRLF"

    def __post_init__(self) -> None:
        # msgspec checks Literal types only when decoding; a dialect built in code is checked here so
        # that a typo cannot silently produce a file the receiver splits differently.
        if self.delimiter not in DELIMITERS:
            raise ValueError(f"delimiter must be one of {DELIMITERS}, not {self.delimiter!r}")
        if self.encoding not in ("utf-8", "cp1252"):
            raise ValueError(f"encoding must be 'utf-8' or 'cp1252', not {self.encoding!r}")
        if self.line_ending not in _NEWLINES:
            raise ValueError(f"line_ending must be 'CRLF' or 'LF', not {self.line_ending!r}")

    @property
    def newline(self) -> str:
        return _NEWLINES[self.line_ending]


PIPE: Final[Dialect] = Dialect()
NOT_SIGN: Final[Dialect] = Dialect(delimiter="¬", encoding="cp1252")
