"""Spec features that validate but that a runtime does not serve yet, named for the user.

LoRA adapters (``models[].adapters``, see ``docs/lora.md``) and traffic splits
(``traffic``, see ``docs/canary.md``) are served by the gateway of ``pilothouse up`` and
``pilothouse gateway``; nothing is pending today. The hook stays for the next feature that
lands in the spec before its runtime.
"""

from __future__ import annotations

from pilothouse.config.fleet import FleetSpec


def pending_features(spec: FleetSpec) -> list[str]:
    """One note per declared feature that ``pilothouse up`` does not serve yet."""
    del spec
    return []
