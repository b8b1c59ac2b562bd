"""Unit tests of the uploader's routing table and retry policy (no broker, no sandbox)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.permissions import default_permissions
from workers.base.mesh.client import MeshPermanentError, MeshTLSError, MeshTransientError, retry_after_seconds
from workers.base.settings import Settings
from workers.uploader.outcomes import local_id_generation
from workers.uploader.retry import RETRY_AFTER_CEILING, upload_retrying
from workers.uploader.routes import EXTENDED_ROUTE, NoRouteError, RoutesError, load_routes, parse_routes

# ------------------------------------------------------------------------------------ routes


def test_packaged_routes_send_flu_to_dps_and_everything_else_to_immunisation() -> None:
    table = load_routes()
    assert table.route("FLU").mailbox == "X26DPS001"
    assert table.route("flu").workflow_id == "DPS_FLU_VAC"
    for vaccine_type in ("COVID", "MMR", "RSV", "HPV", "PERTUSSIS", "MENACWY", "3IN1"):
        route = table.route(vaccine_type)
        assert (route.mailbox, route.workflow_id) == ("X26OT303", "VACCINATIONS_1")
    # Every type the receiver knows has a route, so no valid file is dead-lettered by default.
    assert set(table) == set(default_permissions().vaccine_types) | {EXTENDED_ROUTE}
    # Extended-attribute files go where NHS England files them: as COVID, to the Immunisation mailbox.
    extended = "Vaccination_Extended_Attributes_v1_5_YGA_20261125T12000000.csv"
    assert table.route_file(extended, "FLU") == table.route_file(extended, "COVID") == table.route("COVID")
    assert table.workflows == {"DPS_FLU_VAC", "VACCINATIONS_1"}


def test_a_missing_route_is_an_error_not_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"version": 1, "routes": {"rsv": {"mailbox": "x26hc138", "workflow_id": "W_1"}}}))
    table = load_routes(path)
    assert table.route("RSV").mailbox == "X26HC138"  # types and mailboxes are case-insensitive
    with pytest.raises(NoRouteError) as err:
        table.route("FLU")
    assert err.value.vaccine_type == "FLU"


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        ({"version": 2, "routes": {"RSV": {"mailbox": "X26OT303", "workflow_id": "W"}}}, "version 2"),
        ({"version": 1, "routes": {}}, "no routes"),
        ({"version": 1, "routes": {"RSV": {"mailbox": "X26 OT303", "workflow_id": "W"}}}, "mailbox"),
        ({"version": 1, "routes": {"RSV": {"mailbox": "X26OT303", "workflow_id": "A B"}}}, "workflow id"),
        ({"version": 1, "routes": {"RSV_2": {"mailbox": "X26OT303", "workflow_id": "W"}}}, "letters and digits"),
        ({"version": 1, "routes": {"RSV": {"mailbox": "X26OT303", "workflow_id": "W"},
                                   "rsv": {"mailbox": "X26OT303", "workflow_id": "W"}}}, "routed twice"),
        ({"version": 1, "routes": {"RSV": {"mailbox": "X26OT303"}}}, "workflow_id"),
        ({"version": 1, "routes": {"RSV": {"mailbox": "X26OT303", "workflow_id": "W", "x": 1}}}, "x"),
    ],
)
def test_bad_routing_tables_stop_the_uploader_at_start(doc: dict[str, object], complaint: str) -> None:
    with pytest.raises(RoutesError, match=complaint):
        parse_routes(json.dumps(doc).encode(), "test")


def test_an_unreadable_routes_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(RoutesError, match="cannot read"):
        load_routes(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RoutesError, match=str(bad)):
        load_routes(bad)


def test_local_id_generations() -> None:
    assert local_id_generation("vxf-abc", 1) == "vxf-abc"
    assert local_id_generation("vxf-abc", 3) == "vxf-abc.g3"


# ------------------------------------------------------------------------------------ backoff


async def _run(
    settings: Settings, failures: list[Exception], *, then: Exception | None = None
) -> tuple[int, list[float]]:
    """Attempts made and waits requested, without sleeping: each attempt raises the next of
    `failures`; after them it raises `then` (a permanent refusal) or succeeds."""
    waits: list[float] = []
    attempts = 0

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async for attempt in upload_retrying(settings, sleep=record):
        with attempt:
            attempts += 1
            if attempts <= len(failures):
                raise failures[attempts - 1]
            if then is not None:
                raise then
    return attempts, waits


async def test_transient_failures_are_retried_for_as_long_as_they_last() -> None:
    """No attempt or time bound: 2,000 failures in a row (a night of MESH away at a 60 s cap), then
    the file goes. The waits follow capped exponential backoff with full jitter."""
    settings = Settings(upload_backoff_initial_seconds=0.5, upload_backoff_max_seconds=4.0)
    runs = [await _run(settings, [MeshTransientError("down", status=503)] * 2000) for _ in range(5)]
    for attempts, waits in runs:
        assert attempts == 2001
        assert len(waits) == 2000
        for n, wait in enumerate(waits, start=1):
            assert 0 <= wait <= min(4.0, 0.5 * 2 ** min(n - 1, 30))  # full jitter under the exponential ceiling
        assert max(waits) > 3.0  # the ceiling does grow to the cap
        assert sum(waits) / len(waits) == pytest.approx(2.0, rel=0.1)  # uniform in [0, cap]: mean cap / 2
    # Jitter: the same attempt waits differently across files.
    assert len({round(w[10], 6) for _, w in runs}) == len(runs)


async def test_a_connection_failure_is_retried_like_a_5xx() -> None:
    failures: list[Exception] = [MeshTransientError("POST /outbox failed: ClientConnectorError: refused"),
                                 MeshTransientError("GET /tracking failed: TimeoutError"),
                                 MeshTransientError("POST /outbox", status=429)]
    attempts, waits = await _run(Settings(), failures)
    assert (attempts, len(waits)) == (4, 3)


async def test_retry_after_is_honoured_as_a_floor_and_bounded_by_the_ceiling() -> None:
    settings = Settings(upload_backoff_initial_seconds=0.1, upload_backoff_max_seconds=1.0)
    failures: list[Exception] = [
        MeshTransientError("busy", status=429, retry_after=30.0),
        MeshTransientError("down", status=503),  # no Retry-After: our own backoff again
        MeshTransientError("down", status=503, retry_after=0.0),  # "now": no shorter than our own
        MeshTransientError("busy", status=429, retry_after=10 * RETRY_AFTER_CEILING),
    ]
    _, waits = await _run(settings, failures)
    assert waits[0] == 30.0
    assert 0 <= waits[1] <= 0.2
    assert 0 <= waits[2] <= 0.4
    assert waits[3] == RETRY_AFTER_CEILING


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sat, 05 Dec 2026 06:02:00 GMT", 120.0),  # an HTTP-date two minutes after `now`
        ("Sat, 05 Dec 2026 05:00:00 GMT", 0.0),  # already past: retry now
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_header_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 12, 5, 6, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(header, now=now) == seconds


async def test_permanent_failures_are_not_retried() -> None:
    refusal = MeshPermanentError(417, '{"errorCode": "12"}')
    with pytest.raises(MeshPermanentError):
        await _run(Settings(), [], then=refusal)
    with pytest.raises(MeshPermanentError):  # after transient failures too, at once
        await _run(Settings(upload_backoff_initial_seconds=0.01), [MeshTransientError("x", status=502)] * 3,
                   then=refusal)


async def test_a_tls_failure_is_left_to_the_worker_not_retried_here() -> None:
    with pytest.raises(MeshTLSError):
        await _run(Settings(), [], then=MeshTLSError("CERTIFICATE_VERIFY_FAILED"))


def test_there_is_no_attempt_or_time_limit_to_configure() -> None:
    assert "upload_max_attempts" not in Settings.model_fields
    assert "upload_max_seconds" not in Settings.model_fields
