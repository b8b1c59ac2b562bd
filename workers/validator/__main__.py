"""`python -m workers.validator` (the same as `vaxflow worker validator`)."""

import sys

from workers.base.runtime import run_worker
from workers.validator.worker import run

sys.exit(run_worker("validator", run))
