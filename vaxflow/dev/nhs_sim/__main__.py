"""`python -m vaxflow.dev.nhs_sim`: the NHS England simulator (development stack and tests only)."""

import sys

from vaxflow.dev.nhs_sim.worker import run
from workers.base.runtime import run_worker

sys.exit(run_worker("nhs_sim", run))
