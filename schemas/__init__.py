"""What an event and a file are: NHS England's vaccination-event batch format, as code."""
