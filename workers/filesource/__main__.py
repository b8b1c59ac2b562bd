"""`python -m workers.filesource` (the same as `vaxflow worker filesource`)."""

import sys

from vaxflow.settings import get_settings
from workers.filesource.worker import run
from workers.runtime import run_worker

sys.exit(run_worker("filesource", run, get_settings().health_port))
