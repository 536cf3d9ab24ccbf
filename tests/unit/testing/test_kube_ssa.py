"""Server-side apply in the fake API server: ownership, removal, conflicts (table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from pilothouse.controlplane.kube_apply import changed_fields
from pilothouse.testing._kube_ssa import ApplyConflict, apply, fields_v1, leaves, owners


def cfg(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}


def test_leaves_skip_identity_and_treat_lists_and_empty_maps_as_leaves() -> None:
    obj = cfg(replicas=2, template={"spec": {"containers": [{"name": "a"}], "volumes": {}}})
    assert leaves(obj) == {
        ("spec", "replicas"): 2,
        ("spec", "template", "spec", "containers"): [{"name": "a"}],
        ("spec", "template", "spec", "volumes"): {},
    }
    assert fields_v1({("spec", "replicas")}) == {"f:spec": {"f:replicas": {}}}


def test_create_then_remove_a_field_no_longer_applied() -> None:
    first = apply(None, cfg(replicas=2, paused=False), "me", force=False)
    assert first["spec"] == {"replicas": 2, "paused": False}
    assert owners(first) == {"me": {("spec", "replicas"), ("spec", "paused")}}
    second = apply(first, cfg(replicas=2), "me", force=False)
    assert second["spec"] == {"replicas": 2}
    assert owners(second) == {"me": {("spec", "replicas")}}


@pytest.mark.parametrize(
    ("theirs", "mine", "conflict"),
    [
        ({"replicas": 5}, {"replicas": 2}, True),  # they own it, we change it
        ({"replicas": 2}, {"replicas": 2}, False),  # same value: shared, no conflict
        ({"paused": True}, {"replicas": 2}, False),  # disjoint fields
        ({"template": {"spec": {"x": 1}}}, {"template": {"spec": {"x": 2}}}, True),
    ],
)
def test_conflicts_only_when_changing_a_field_another_manager_owns(
    theirs: dict[str, Any], mine: dict[str, Any], conflict: bool
) -> None:
    base = apply(None, cfg(**theirs), "kubectl", force=False)
    if conflict:
        with pytest.raises(ApplyConflict, match='conflict with "kubectl" using apps/v1'):
            apply(base, cfg(**mine), "pilothouse", force=False)
        forced = apply(base, cfg(**mine), "pilothouse", force=True)
        assert forced["spec"] == {**theirs, **mine}
        assert set(owners(forced)) == {"pilothouse"}
    else:
        merged = apply(base, cfg(**mine), "pilothouse", force=False)
        assert merged["spec"] == {**theirs, **mine}


def test_a_field_another_manager_also_owns_is_kept_when_we_stop_applying_it() -> None:
    ours = apply(None, cfg(replicas=2), "pilothouse", force=False)
    shared = apply(ours, cfg(replicas=2), "kubectl", force=False)
    dropped = apply(shared, cfg(paused=True), "pilothouse", force=False)
    assert dropped["spec"] == {"replicas": 2, "paused": True}
    assert owners(dropped) == {
        "kubectl": {("spec", "replicas")},
        "pilothouse": {("spec", "paused")},
    }


def test_changed_fields_names_the_paths() -> None:
    before = {"spec": {"replicas": 2, "template": {"image": "a"}}, "metadata": {"name": "x"}}
    after = {
        "spec": {"replicas": 3, "template": {"image": "a"}, "paused": True},
        "metadata": {"name": "x"},
    }
    assert changed_fields(before, after) == ["spec.paused", "spec.replicas"]
    assert changed_fields(before, before) == []
