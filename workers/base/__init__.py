"""The base every worker stands on: settings, Kafka clients, MESH client, runtime, logs, shared state readers."""
