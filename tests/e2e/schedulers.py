"""Scheduler configs shared by the e2e tests that follow KV events."""

from __future__ import annotations

# precise-prefix (KV events) weighted over the gateway's in-flight count.
PRECISE_PREFIX = """\
plugins:
  - type: ready
  - type: precise-prefix
  - type: least-requests
  - type: max-score
profiles:
  - name: default
    plugins:
      - {ref: ready}
      - {ref: precise-prefix, weight: 2}
      - {ref: least-requests}
      - {ref: max-score}
"""
