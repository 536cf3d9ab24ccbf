"""One module per engine kind, each defining that kind's :class:`~pilothouse.engines.kind.EngineKind`."""
