"""Profile handlers: decide which profiles run and which result is primary."""
