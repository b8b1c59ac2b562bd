"""batcher: vaccination.events.valid -> vaccination.batches.ready (one record per file)."""
