"""`python -m workers.uploader` (the same as `vaxflow worker uploader`)."""

import sys

from workers.base.runtime import run_worker
from workers.uploader.worker import run

sys.exit(run_worker("uploader", run))
