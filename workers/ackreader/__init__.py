"""ackreader: NHS England's InfAck/BusAck files from our MESH inbox -> vaccination.acks."""
