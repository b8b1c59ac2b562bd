"""`python -m workers.gateway` (the same as `vaxflow worker gateway`)."""

import sys

from workers.base.runtime import run_worker
from workers.gateway.worker import run

sys.exit(run_worker("gateway", run))
