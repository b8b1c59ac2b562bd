"""`python -m vaxflow.ops` (the same as `vaxflow worker ops` once registered): the ops service."""

import sys

from vaxflow.ops.service import run
from workers.base.runtime import run_worker
from workers.base.settings import get_settings

sys.exit(run_worker("ops", run, get_settings().health_port))
