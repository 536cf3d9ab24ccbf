"""Control plane: fleet executors (local processes today), reconcile and autoscale later."""
