"""`python -m workers.batcher` (the same as `vaxflow worker batcher`)."""

import sys

from workers.base.runtime import run_worker
from workers.batcher.worker import run

sys.exit(run_worker("batcher", run))
