"""One module per engine kind, each defining that kind's adapter, an ``EngineKind``."""
