"""uploader: vaccination.batches.ready -> MESH (NHS England) -> vaccination.batches.sent / .deadletter."""
