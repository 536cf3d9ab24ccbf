"""Engine adapters (what each engine exposes) and launchers (how to start one)."""
