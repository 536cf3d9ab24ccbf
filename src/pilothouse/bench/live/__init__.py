"""`pilothouse bench live`: workloads over HTTP against a running fleet."""
