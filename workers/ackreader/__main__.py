"""`python -m workers.ackreader` (the same as `vaxflow worker ackreader`)."""

import sys

from vaxflow.settings import get_settings
from workers.ackreader.worker import run
from workers.runtime import run_worker

sys.exit(run_worker("ackreader", run, get_settings().health_port))
