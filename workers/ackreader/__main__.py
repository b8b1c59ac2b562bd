"""`python -m workers.ackreader` (the same as `vaxflow worker ackreader`)."""

import sys

from workers.ackreader.worker import run
from workers.base.runtime import run_worker

sys.exit(run_worker("ackreader", run))
