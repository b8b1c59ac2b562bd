"""`python -m workers.validator` (the same as `vaxflow worker validator`)."""

import sys

from workers.base.runtime import run_worker
from workers.base.settings import get_settings
from workers.validator.worker import run

sys.exit(run_worker("validator", run, get_settings().health_port))
