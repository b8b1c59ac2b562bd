"""The names of the batcher's gauges.

The batcher exports them on its /metrics and the ops service's lag view scrapes them
(vaxflow/ops/lag.py): both take the names from here, so a rename cannot leave the dashboard
reading a gauge that no longer exists.
"""

from typing import Final

HELD_GAUGE: Final = "vaxflow_batcher_held_events"
OPEN_GAUGE: Final = "vaxflow_batcher_open_windows"
# Per (vaccine type, sender), shown by the dashboard (docs/decisions/0008-lag-evaluation.md,
# "What the batcher should add").
KEY_HELD_GAUGE: Final = "vaxflow_batcher_key_held_events"
KEY_OPEN_GAUGE: Final = "vaxflow_batcher_key_open_windows"
