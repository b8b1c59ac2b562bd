"""`python -m workers.gateway` (the same as `vaxflow worker gateway`)."""

import sys

from workers.base.runtime import run_worker
from workers.base.settings import get_settings
from workers.gateway.worker import run

sys.exit(run_worker("gateway", run, get_settings().health_port))
