"""``pilothouse bench toolgateway``: the tool gateway's added latency per tools/call."""
