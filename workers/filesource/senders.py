"""Sender binding (issue 17): which ODS codes a file may be named for, by where it came from.

A batch file names the provider it is for (the ODS code in its name). Without a binding, anyone
able to drop a file in the directory, or any MESH mailbox able to reach the intake, could submit
for every provider: a file from mailbox X26PROVA named for YGM17 was published as YGM17. Each
origin is now configured with the codes it may submit for; a file for any other code is rejected
with rule `file.sender`, and nothing of it is published.

`None` means no binding was configured (every code, with a warning at start, so existing
deployments keep running until configured); `["*"]` allows every code on purpose (the dev stack).

The drop directory is bound as a whole (`VAXFLOW_FILESOURCE_DIR_SENDERS`), and each per-sender
subdirectory `<directory>/<name>/` named in `VAXFLOW_FILESOURCE_SUBDIR_SENDERS` by its own codes
only: a subdirectory the mapping does not name is not read at all (decision 0019).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

from schemas.filenames import FileNameError, parse_batch_file_name
from schemas.record import Reason
from workers.filesource.records import file_reason

ANY: Final = "*"
RULE: Final = "file.sender"


def may_submit(allowed: Collection[str] | None, ods_code: str) -> bool:
    """Whether an origin allowed `allowed` may submit a file for `ods_code` (case-insensitive)."""
    if allowed is None:
        return True
    codes = {code.strip().upper() for code in allowed}
    return ANY in codes or ods_code.upper() in codes


def ods_of(file_name: str) -> str | None:
    """The ODS code a batch file's name is for, or None when the name is not a batch-file name
    (the file source then rejects the name itself)."""
    try:
        return parse_batch_file_name(file_name).ods_code
    except (FileNameError, ValueError):
        return None


def mailbox_codes(bindings: Mapping[str, Collection[str]] | None, mailbox: str | None) -> Collection[str] | None:
    """The codes an intake mailbox may submit for: every code without bindings, none for a
    mailbox the bindings do not name (mailbox ids compare case-insensitively)."""
    if bindings is None:
        return None
    wanted = (mailbox or "").strip().upper()
    for name, codes in bindings.items():
        if name.strip().upper() == wanted:
            return codes
    return ()


def subdirectory_codes(bindings: Mapping[str, Collection[str]] | None, subdirectory: str) -> Collection[str]:
    """The codes a per-sender subdirectory may submit for: none for one the bindings do not name
    (names compare exactly, as the file system does)."""
    return (bindings or {}).get(subdirectory, ())


def directory_refusal(ods_code: str, subdirectory: str | None = None) -> Reason:
    where = "this directory" if subdirectory is None else f"subdirectory {subdirectory}/"
    return file_reason(RULE, f"{where} may not submit files for ODS code {ods_code}")


def mailbox_refusal(mailbox: str | None, ods_code: str | None) -> Reason:
    sender = mailbox or "(no mex-from)"
    if ods_code is None:
        return file_reason(RULE, f"MESH mailbox {sender} is not bound to any ODS code")
    return file_reason(RULE, f"MESH mailbox {sender} may not submit files for ODS code {ods_code}")
