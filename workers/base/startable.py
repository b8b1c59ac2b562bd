"""Objects with an async `start` and `stop` that also serve as `async with` blocks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Startable(ABC):
    """`async with x:` starts `x` and stops it on the way out, error or not.

    The long-lived readers (topic follower, sent ledger, the ops lag probe and monitor) are used
    both ways: started and stopped by a worker's own loop, or scoped by `async with` in tools and
    tests; this is the one copy of the scoped form, so the two can never drift apart.
    """

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
