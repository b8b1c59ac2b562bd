"""The uploader's pure decisions (workers/uploader/outcomes.py): the refusal it records, and the
origin header a ready record's outcome carries (which files go together: test_workers_uploader_lanes.py)."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord

from schemas.pipeline import ReadyFile
from workers.uploader.outcomes import UploadRefused, origin_headers, origin_value

ORIGIN = "vaxflow.origin"


def record(
    key: bytes | None, offset: int = 0, headers: list[tuple[str, bytes]] | None = None
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="vaccination.files.ready", partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=key, value=b"", checksum=None, serialized_key_size=0, serialized_value_size=0,
        headers=headers or [],
    )


def ready(origins: list[tuple[int, int]]) -> ReadyFile:
    return ReadyFile(
        file_name="RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", vaccine_type="RSV", sender_ods="X8E5B",
        window_start="2025-01-01T09:00:00Z", window_end="2025-01-01T09:05:00Z", part=1, rows=len(origins),
        content=b"", origins=origins, valid_ranges=[], local_id="vxf-0",
    )


def test_an_upload_refusal_keeps_what_mesh_said() -> None:
    cause = RuntimeError("403 Forbidden")
    refused = UploadRefused(cause, status=403, body="no permission", attempts=2)
    assert str(refused) == "403 Forbidden"
    assert refused.cause is cause
    assert refused.status == 403
    assert refused.body == "no permission"
    assert refused.attempts == 2


@pytest.mark.parametrize(
    ("headers", "origins", "expected"),
    [
        ([(ORIGIN, b"3:17")], [(0, 5)], b"3:17"),  # the record's own origin header wins
        ([("other", b"x"), (ORIGIN, b"3:17")], [], b"3:17"),
        ([], [(2, 40), (1, 9)], b"2:40"),  # else the origin of the file's first row
        ([(ORIGIN, b"")], [(2, 40)], b"2:40"),  # an empty header is no origin
        ([], [], b""),  # a file without rows has none
    ],
)
def test_the_origin_of_a_ready_record(
    headers: list[tuple[str, bytes]], origins: list[tuple[int, int]], expected: bytes
) -> None:
    rec, file = record(b"f", 0, headers), ready(origins)
    assert origin_value(rec, file) == expected
    assert origin_headers(rec, file) == ([(ORIGIN, expected)] if expected else [])
