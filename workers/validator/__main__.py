"""`python -m workers.validator` (the same as `vaxflow worker validator`)."""

import sys

from vaxflow.settings import get_settings
from workers.runtime import run_worker
from workers.validator.worker import run

sys.exit(run_worker("validator", run, get_settings().health_port))
