"""The routing table: vaccine type -> (recipient MESH mailbox, workflow id).

Which mailbox takes which vaccine is public (flu to the DPS mailbox, the rest to the Immunisation
mailbox: docs/architecture.md, "MESH"); the workflow ids are allocated at MESH onboarding and are not,
so the table is configuration (VAXFLOW_ROUTES_FILE) with sandbox defaults packaged beside this
module. There is deliberately no catch-all entry: a vaccine type nobody routed is a permanent
failure (the file goes to the dead-letter topic), because guessing a recipient for patient data is
worse than holding a file back until an operator decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import msgspec

from schemas.extended import is_extended_file_name

ROUTES_VERSION: Final = 1
DEFAULT_ROUTES_RESOURCE: Final = "routes_default.json"
# MESH mailbox ids are letters and digits (X26OT303, X26HC138); workflow ids printable, no spaces.
_MAILBOX: Final = re.compile(r"[A-Z0-9]{3,20}")
_WORKFLOW: Final = re.compile(r"[\x21-\x7e]{1,300}")
_VACCINE_TYPE: Final = re.compile(r"[A-Z0-9]+")
# The route of the extended-attribute file family (docs/decisions/0004, 0020): its own entry, not
# the vaccination's type, because the receiver files every one as COVID whatever the vaccine.
EXTENDED_ROUTE: Final = "EXTENDED_ATTRIBUTES"


class RoutesError(ValueError):
    """The routing table cannot be used; raised at start-up, naming the entry."""


class NoRouteError(LookupError):
    """No route for a vaccine type: permanent for this file until the table changes."""

    def __init__(self, vaccine_type: str) -> None:
        super().__init__(f"no MESH route for vaccine type {vaccine_type!r}")
        self.vaccine_type = vaccine_type


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mailbox: str
    workflow_id: str


class _RoutesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    routes: dict[str, Route]
    comment: str = msgspec.field(default="", name="_comment")


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Vaccine types (upper case) to routes; read-only after loading."""

    routes: Mapping[str, Route]
    source: str

    def route(self, vaccine_type: str) -> Route:
        found = self.routes.get(vaccine_type.upper())
        if found is None:
            raise NoRouteError(vaccine_type)
        return found

    def route_file(self, file_name: str, vaccine_type: str) -> Route:
        """The route of one file: its family's for an extended-attribute file, else its type's."""
        return self.route(EXTENDED_ROUTE if is_extended_file_name(file_name) else vaccine_type)

    @property
    def workflows(self) -> frozenset[str]:
        """Every workflow id the table uses: the MESH client's allow-list for sends."""
        return frozenset(r.workflow_id for r in self.routes.values())

    @property
    def recipients(self) -> frozenset[str]:
        return frozenset(r.mailbox for r in self.routes.values())

    def __iter__(self) -> Iterator[str]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def parse_routes(data: bytes, source: str = "<bytes>") -> RoutingTable:
    """Decode and check every entry, so a typo stops the uploader at start, not mid-stream."""
    try:
        doc = msgspec.json.decode(data, type=_RoutesFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RoutesError(f"{source}: {exc}") from None
    if doc.version != ROUTES_VERSION:
        raise RoutesError(f"{source}: version {doc.version} is not supported (expected {ROUTES_VERSION})")
    if not doc.routes:
        raise RoutesError(f"{source}: no routes")
    routes: dict[str, Route] = {}
    for vaccine_type, route in doc.routes.items():
        key = vaccine_type.strip().upper()
        if not _VACCINE_TYPE.fullmatch(key) and key != EXTENDED_ROUTE:
            raise RoutesError(f"{source}: vaccine type {vaccine_type!r} must be letters and digits")
        if key in routes:
            raise RoutesError(f"{source}: vaccine type {key} is routed twice (keys are case-insensitive)")
        mailbox = route.mailbox.strip().upper()
        if not _MAILBOX.fullmatch(mailbox):
            raise RoutesError(f"{source}: {key}: mailbox {route.mailbox!r} is not a MESH mailbox id")
        if not _WORKFLOW.fullmatch(route.workflow_id):
            raise RoutesError(f"{source}: {key}: workflow id {route.workflow_id!r} must be printable, no spaces")
        routes[key] = Route(mailbox=mailbox, workflow_id=route.workflow_id)
    return RoutingTable(routes=routes, source=source)


def load_routes(path: Path | None = None) -> RoutingTable:
    """The table at `path`, or the packaged sandbox defaults when no file is configured."""
    if path is None:
        resource = resources.files("workers.uploader") / DEFAULT_ROUTES_RESOURCE
        return parse_routes(resource.read_bytes(), f"packaged {DEFAULT_ROUTES_RESOURCE}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RoutesError(f"cannot read routes file {path}: {exc.strerror}") from None
    return parse_routes(data, str(path))
