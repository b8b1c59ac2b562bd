"""vaxflow: vaccination events to NHS England batch files over MESH, on Apache Kafka."""
