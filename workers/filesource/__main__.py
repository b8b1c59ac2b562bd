"""`python -m workers.filesource` (the same as `vaxflow worker filesource`)."""

import sys

from workers.base.runtime import run_worker
from workers.filesource.worker import run

sys.exit(run_worker("filesource", run))
