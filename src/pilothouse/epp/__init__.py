"""The endpoint picker (EPP) for Envoy-based gateways: Gateway API Inference Extension.

``server`` (listeners and wiring), ``processor`` (one ext_proc stream's state machine),
``protocol`` (the wire format), ``health``, ``metrics``, ``cli`` (``pilothouse epp``) and
``envoy_config`` (the example Envoy config). Importing this package imports no gRPC code.
"""
