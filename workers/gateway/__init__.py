"""gateway: HTTP intake (POST /v1/events) -> vaccination.events.raw, for systems that cannot speak Kafka."""
