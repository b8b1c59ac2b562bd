"""The local development stack: a real Kafka broker and NHS Digital's MESH sandbox."""
