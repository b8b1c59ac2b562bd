"""Which sender may send which vaccine type with which action, and which types exist at all.

Both come from the receiver's own configuration files (spec digest section d), kept in their
original shape under schemas/data/ so that a new copy from NHS England can be dropped in as-is;
a deployment can point at its own copies instead (for example the receiver's preprod config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

import msgspec

# Only these letters matter for batch files: R(ead) and S(earch) are API-only.
ACTION_LETTER: Final[dict[str, str]] = {"NEW": "C", "UPDATE": "U", "DELETE": "D"}
_BATCH_LETTERS: Final = frozenset(ACTION_LETTER.values())


class _SupplierEntry(msgspec.Struct, frozen=True):
    supplier: str
    ods_codes: list[str]
    permissions: list[str] = []


class _DiseaseEntry(msgspec.Struct, frozen=True):
    vacc_type: str


@dataclass(frozen=True, slots=True, eq=False)
class Permissions:
    """Supplier permissions (ODS code -> vaccine type -> letters among C, U, D) and known types.

    ODS codes and vaccine types are stored upper-case, as the receiver upper-cases file names.
    Compared and hashed by identity, so that the validator can cache per loaded configuration.
    """

    grants: Mapping[str, Mapping[str, frozenset[str]]]
    vaccine_types: frozenset[str]
    suppliers: Mapping[str, str] = field(default_factory=dict)

    def letters(self, ods: str, vaccine_type: str) -> frozenset[str]:
        """The C/U/D letters `ods` holds for `vaccine_type`; empty when it holds none."""
        return self.grants.get(ods.upper(), {}).get(vaccine_type.upper(), frozenset())

    def allows(self, ods: str, vaccine_type: str, action: str) -> bool:
        """NEW needs C, UPDATE needs U, DELETE needs D (digest section c, row-level permission)."""
        letter = ACTION_LETTER.get(action.upper())
        return letter is not None and letter in self.letters(ods, vaccine_type)

    def is_known_type(self, vaccine_type: str) -> bool:
        return vaccine_type.upper() in self.vaccine_types

    def senders_for(self, vaccine_type: str, action: str = "NEW") -> list[str]:
        """ODS codes allowed to send `action` for `vaccine_type`, sorted (generators, tests)."""
        return sorted(ods for ods in self.grants if self.allows(ods, vaccine_type, action))


def parse_permissions(config: bytes, disease_mapping: bytes) -> Permissions:
    """Build from the two files' bytes; raises ValueError on a malformed file, at startup."""
    try:
        entries = msgspec.json.decode(config, type=list[_SupplierEntry])
        diseases = msgspec.json.decode(disease_mapping, type=list[_DiseaseEntry])
    except msgspec.DecodeError as exc:
        raise ValueError(f"malformed permissions or disease mapping: {exc}") from exc
    grants: dict[str, dict[str, frozenset[str]]] = {}
    suppliers: dict[str, str] = {}
    for entry in entries:
        by_type: dict[str, frozenset[str]] = {}
        for grant in entry.permissions:
            vaccine_type, sep, letters = grant.partition(".")
            if not sep or not vaccine_type:
                raise ValueError(f"permission {grant!r} of {entry.supplier} is not TYPE.LETTERS")
            held = frozenset(letters.upper()) & _BATCH_LETTERS
            key = vaccine_type.upper()
            by_type[key] = by_type.get(key, frozenset()) | held
        for ods in entry.ods_codes:
            grants[ods.upper()] = {t: held for t, held in by_type.items() if held}
            suppliers[ods.upper()] = entry.supplier
    types = frozenset(d.vacc_type.upper() for d in diseases)
    return Permissions(grants=grants, vaccine_types=types, suppliers=suppliers)


def load_permissions(
    permissions_path: str | Path | None = None, disease_mapping_path: str | Path | None = None
) -> Permissions:
    """Load from paths, each defaulting to the packaged production copy."""
    data = resources.files("schemas") / "data"
    config = Path(permissions_path).read_bytes() if permissions_path else (data / "permissions_prod.json").read_bytes()
    mapping = (
        Path(disease_mapping_path).read_bytes()
        if disease_mapping_path
        else (data / "disease_mapping.json").read_bytes()
    )
    return parse_permissions(config, mapping)


@cache
def default_permissions() -> Permissions:
    """The packaged production configuration, loaded once per process."""
    return load_permissions()


def dump_summary(permissions: Permissions) -> str:
    """A JSON summary (ODS -> type -> letters) for operators checking what a deployment loaded."""
    return json.dumps(
        {ods: {t: "".join(sorted(held)) for t, held in types.items()} for ods, types in permissions.grants.items()},
        indent=2,
        sort_keys=True,
    )
