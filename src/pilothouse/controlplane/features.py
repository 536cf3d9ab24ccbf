"""Spec features that validate today but whose runtime lands later, named for the user."""

from __future__ import annotations

from pilothouse.config.fleet import FleetSpec


def pending_features(spec: FleetSpec) -> list[str]:
    """One note per declared feature that ``pilothouse up`` does not serve yet."""
    notes = []
    for i, model in enumerate(spec.models):
        if model.adapters:
            notes.append(
                f"models[{i}].adapters: LoRA adapters are validated but not loaded yet; "
                "requests for them get 404"
            )
    if spec.traffic:
        notes.append(
            "traffic: splits are validated but not routed yet; clients must name a version"
        )
    return notes
