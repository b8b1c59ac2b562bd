"""filesource: batch files handed into a directory -> vaccination.events.raw, each file exactly once."""
