"""The catalogue's topics in a test's namespace, created with the project's own ensure_topics."""

from __future__ import annotations

from topics.ensure import ensure_for
from workers.base.kafka import admin
from workers.base.settings import Settings


async def ensure(settings: Settings) -> None:
    """Create (or check) every catalogue topic in `settings.topic_namespace`; fail on any drift."""
    async with admin(settings) as client:
        reports = await ensure_for(client, settings)
    assert all(r.ok for r in reports), [r.drift for r in reports if not r.ok]
