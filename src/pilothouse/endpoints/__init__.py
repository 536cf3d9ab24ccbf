"""Endpoint state: the pool of replicas and the data producers that keep it current."""
