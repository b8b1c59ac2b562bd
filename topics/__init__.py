"""What flows: the declarative catalogue of vaxflow's Kafka topics."""
