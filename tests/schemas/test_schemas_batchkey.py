"""The batch key `TYPE|ODS` and a file's MESH local id, each defined once in schemas/batchkey.py."""

from __future__ import annotations

import hashlib

import pytest

from schemas.batchkey import decode_key, encode_key, local_id_for


def test_a_key_round_trips() -> None:
    assert encode_key("RSV", "X8E5B") == b"RSV|X8E5B"
    assert decode_key(encode_key("3IN1", "YGM41")) == ("3IN1", "YGM41")


@pytest.mark.parametrize(
    "key",
    [None, b"", b"RSV", b"RSV|", b"|X8E5B", b"rsv|X8E5B", b"RSV|X8E5B|1", b"RSV X8E5B", b"RSV|X8-E5B",
     b"A" * 21 + b"|X", b"RSV|" + b"X" * 13],
)
def test_anything_but_the_canonical_form_is_refused(key: bytes | None) -> None:
    with pytest.raises(ValueError, match="VACCINE_TYPE\\|SENDER_ODS"):
        decode_key(key)


def test_the_longest_canonical_parts_are_accepted() -> None:
    assert decode_key(b"A" * 20 + b"|" + b"9" * 12) == ("A" * 20, "9" * 12)


def test_local_id_depends_on_name_and_bytes_only() -> None:
    a = local_id_for("RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", b"content")
    assert a == local_id_for("RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", b"content")
    assert a.startswith("vxf-")
    assert len(a) == 36
    assert a != local_id_for("RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", b"contenT")
    assert a != local_id_for("RSV_Vaccinations_v5_X8E5B_20250101T09000001.csv", b"content")
    # the separator keeps name and content apart: moving a byte across the boundary changes the id
    assert local_id_for("ab", b"c") != local_id_for("a", b"bc")


def test_local_id_is_stable_across_releases() -> None:
    # A file uploaded before an upgrade and tracked after it must still be found by its local id
    # (docs/decisions/0007-uploader-exactly-once.md): the derivation is part of the contract.
    name, content = "RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", b"content"
    digest = hashlib.sha256(name.encode() + b"\0" + content).hexdigest()
    assert local_id_for(name, content) == "vxf-" + digest[:32]
