"""`pilothouse bench epp`: the endpoint picker behind a real Envoy."""
