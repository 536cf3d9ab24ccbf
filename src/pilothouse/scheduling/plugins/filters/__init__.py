"""Filters: drop endpoints that must not serve the request."""
