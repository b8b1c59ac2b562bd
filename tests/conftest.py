"""Test session plugins: the real Kafka broker and the real MESH sandbox, started once.

Every test runs in development mode (VAXFLOW_DEV_MODE=true, as `vaxflow dev up` sets it): the
sandbox's credentials, plain http:// to it, short MESH polls and the development gateway token are
refused without it. Set here, before any Settings is made, so worker processes the tests start
inherit it; tests of the production refusals build their Settings with dev_mode=False.
"""

import os

os.environ["VAXFLOW_DEV_MODE"] = "true"

pytest_plugins = ["fixtures_kafka", "fixtures_mesh"]
