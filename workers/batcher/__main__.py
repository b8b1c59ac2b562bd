"""`python -m workers.batcher` (the same as `vaxflow worker batcher`)."""

import sys

from vaxflow.settings import get_settings
from workers.batcher.worker import run
from workers.runtime import run_worker

sys.exit(run_worker("batcher", run, get_settings().health_port))
