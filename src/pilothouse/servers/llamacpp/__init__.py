"""The embedded engine: llama.cpp (through llama-cpp-python) serving a GGUF model."""
