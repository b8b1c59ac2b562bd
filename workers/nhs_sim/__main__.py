"""`python -m workers.nhs_sim`: the NHS England simulator (development stack and tests only)."""

import sys

from vaxflow.settings import get_settings
from workers.nhs_sim.worker import run
from workers.runtime import run_worker

sys.exit(run_worker("nhs_sim", run, get_settings().health_port))
