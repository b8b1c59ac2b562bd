"""Unit tests of the uploader's routing table and retry policy (no broker, no sandbox)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from schemas.permissions import default_permissions
from workers.base.mesh.client import MeshPermanentError, MeshTransientError
from workers.base.settings import Settings
from workers.uploader.outcomes import local_id_generation
from workers.uploader.retry import upload_retrying
from workers.uploader.routes import NoRouteError, RoutesError, load_routes, parse_routes

# ------------------------------------------------------------------------------------ routes


def test_packaged_routes_send_flu_to_dps_and_everything_else_to_immunisation() -> None:
    table = load_routes()
    assert table.route("FLU").mailbox == "X26DPS001"
    assert table.route("flu").workflow_id == "DPS_FLU_VAC"
    for vaccine_type in ("COVID", "MMR", "RSV", "HPV", "PERTUSSIS", "MENACWY", "3IN1"):
        route = table.route(vaccine_type)
        assert (route.mailbox, route.workflow_id) == ("X26OT303", "VACCINATIONS_1")
    # Every type the receiver knows has a route, so no valid file is dead-lettered by default.
    assert set(table) == set(default_permissions().vaccine_types)
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


async def _run(settings: Settings, fail: Exception, *, work_seconds: float = 0.0) -> tuple[int, list[float]]:
    """Attempts made and waits requested, without actually sleeping (unless work takes time)."""
    waits: list[float] = []
    attempts = 0

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def upload() -> None:
        nonlocal attempts
        async for attempt in upload_retrying(settings, sleep=record):
            with attempt:
                attempts += 1
                if work_seconds:
                    await asyncio.sleep(work_seconds)
                raise fail

    with pytest.raises(type(fail)):
        await upload()
    return attempts, waits


async def test_transient_failures_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    settings = Settings(upload_max_attempts=7, upload_backoff_initial_seconds=0.5, upload_backoff_max_seconds=4.0)
    runs = [await _run(settings, MeshTransientError("down", status=503)) for _ in range(30)]
    for attempts, waits in runs:
        assert attempts == 7  # bounded by attempts, the last error re-raised as itself
        assert len(waits) == 6
        for n, wait in enumerate(waits, start=1):
            assert 0 <= wait <= min(4.0, 0.5 * 2 ** (n - 1))  # full jitter under the exponential ceiling
    # Jitter: the same attempt waits differently across files; the ceiling does grow.
    assert len({round(w[5], 6) for _, w in runs}) > 20
    assert max(w[5] for _, w in runs) > 2.0


async def test_permanent_failures_are_not_retried() -> None:
    attempts, waits = await _run(Settings(), MeshPermanentError(417, '{"errorCode": "12"}'))
    assert (attempts, waits) == (1, [])


async def test_retries_are_bounded_by_time_as_well() -> None:
    settings = Settings(
        upload_max_attempts=1000, upload_max_seconds=0.5,
        upload_backoff_initial_seconds=0.01, upload_backoff_max_seconds=0.02,
    )
    started = time.monotonic()
    attempts, _ = await _run(settings, MeshTransientError("timeout"), work_seconds=0.1)
    assert 3 <= attempts <= 6
    assert time.monotonic() - started < 1.0
