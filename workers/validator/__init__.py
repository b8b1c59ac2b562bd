"""validator: vaccination.events.raw -> vaccination.events.valid | vaccination.events.rejected."""
