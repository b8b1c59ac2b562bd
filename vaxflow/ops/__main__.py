"""`python -m vaxflow.ops` (the same as `vaxflow worker ops` once registered): the ops service."""

import sys

from vaxflow.ops.service import run
from workers.base.runtime import run_worker

sys.exit(run_worker("ops", run))
