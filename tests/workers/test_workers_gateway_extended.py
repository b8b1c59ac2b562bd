"""The gateway's shape check of extended attributes (contract version 2): the same rule ids as the
validator, so a sender sees one vocabulary whichever stage refuses it."""

from __future__ import annotations

import msgspec
import pytest

from workers.gateway.intake import decode_line


def event(attributes: object) -> bytes:
    return msgspec.json.encode(
        {
            "vaccine_type": "COVID",
            "sender_ods": "YGA",
            "source_system": "t",
            "record": {},
            "extended_attributes": attributes,
        }
    )


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (event([{"ATTRIBUTE_ID": "a", "COLOUR": "x"}]), "extended_attributes.unknown_field"),
        (event([{"ATTRIBUTE_ID": 7}]), "extended_attributes.type"),
    ],
)
def test_the_gateway_names_the_same_rule_for_a_malformed_attribute(raw: bytes, rule: str) -> None:
    line = decode_line(1, raw)
    assert getattr(line, "rule", None) == rule


def test_well_formed_attributes_pass_the_gateway() -> None:
    line = decode_line(1, event([{"ATTRIBUTE_ID": "a", "ATTRIBUTE_VALUE": "b"}]))
    assert not hasattr(line, "rule")
