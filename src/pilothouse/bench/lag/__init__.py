"""`pilothouse bench gateway-lag` and the event-loop lag probe."""
