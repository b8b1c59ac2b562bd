"""`python -m workers.gateway` (the same as `vaxflow worker gateway`)."""

import sys

from vaxflow.settings import get_settings
from workers.gateway.worker import run
from workers.runtime import run_worker

sys.exit(run_worker("gateway", run, get_settings().health_port))
