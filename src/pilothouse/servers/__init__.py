"""Engine servers pilothouse runs itself: the vLLM-compatible simulator and llama.cpp.

Engine-kind knowledge (launch commands, metric names, probe paths) lives one layer down in
:mod:`pilothouse.engines`; this package holds the processes.
"""
