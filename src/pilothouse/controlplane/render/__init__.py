"""Kubernetes rendering of a Fleet: plain manifests (``render k8s``) and a Helm chart
(``render helm``) built by the same code.

One module per kind of object (:mod:`.vllm` model servers, :mod:`.epp` endpoint pickers,
:mod:`.pool` InferencePools, :mod:`.route` HTTPRoutes and Gateways, :mod:`.autoscale` HPAs and
KEDA ScaledObjects); :mod:`.bundle` assembles them, :mod:`.helm` turns them into a chart, and
:mod:`.params` is the switch between the two.
"""
