"""Benchmarks: the gateway-overhead harness, its load generator and a fast mock engine.

Each benchmark is one ``pilothouse bench`` subcommand (see :mod:`pilothouse.bench.cli`).
"""
