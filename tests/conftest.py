"""Test session plugins: the real Kafka broker and the real MESH sandbox, started once.

Every test runs in development mode (VAXFLOW_DEV_MODE=true, as `vaxflow dev up` sets it): the
sandbox's credentials, plain http:// to it, short MESH polls and the development gateway token are
refused without it. Set here, before any Settings is made, so worker processes the tests start
inherit it; tests of the production refusals build their Settings with dev_mode=False.
"""

import os

os.environ["VAXFLOW_DEV_MODE"] = "true"

# Imported here, at collection, rather than first by hypothesis' own plugin in its end-of-session
# summary: a run of only integration tests otherwise imports it there, deep inside pytest's hook
# calls, and Python 3.11.7's compiler fails the assertion rewrite with "SystemError: AST constructor
# recursion depth mismatch", turning a green run into exit status 1.
import hypothesis  # noqa: F401

pytest_plugins = ["fixtures_kafka", "fixtures_mesh"]
