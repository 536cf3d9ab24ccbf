"""Typed spec models (pydantic, extra="forbid") and the YAML loader."""
