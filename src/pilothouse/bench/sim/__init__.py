"""`pilothouse bench sim`: routing and autoscaling policies in virtual time."""
