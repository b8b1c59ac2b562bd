"""Test session plugins: the real Kafka broker and the real MESH sandbox, started once."""

# Imported here, at collection, rather than first by hypothesis' own plugin in its end-of-session
# summary: a run of only integration tests otherwise imports it there, deep inside pytest's hook
# calls, and Python 3.11.7's compiler fails the assertion rewrite with "SystemError: AST constructor
# recursion depth mismatch", turning a green run into exit status 1.
import hypothesis  # noqa: F401

pytest_plugins = ["fixtures_kafka", "fixtures_mesh"]
