"""`python -m workers.ackreader` (the same as `vaxflow worker ackreader`)."""

import sys

from workers.ackreader.worker import run
from workers.base.runtime import run_worker
from workers.base.settings import get_settings

sys.exit(run_worker("ackreader", run, get_settings().health_port))
