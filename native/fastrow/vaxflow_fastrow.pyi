"""Accept-only fast path of vaxflow's event validation (native/fastrow/src/lib.rs)."""

class RowValidator:
    def __init__(
        self,
        columns: list[tuple[str, str, int, bool, bool]],
        tables: dict[str, dict[str, str]],
    ) -> None: ...
    def row(self, raw: bytes, now_epoch: float, today: str) -> tuple[str, str, str, str, bytes] | None: ...
