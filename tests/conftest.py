"""Test session plugins: the real Kafka broker and the real MESH sandbox, started once."""

pytest_plugins = ["fixtures_kafka", "fixtures_mesh"]
