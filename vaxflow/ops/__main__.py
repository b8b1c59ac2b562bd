"""`python -m vaxflow.ops` (the same as `vaxflow worker ops` once registered): the ops service."""

import sys

from vaxflow.ops.service import run
from vaxflow.settings import get_settings
from workers.runtime import run_worker

sys.exit(run_worker("ops", run, get_settings().health_port))
