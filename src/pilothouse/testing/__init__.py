"""Fakes shipped with pilothouse so users can test their own integrations without a cluster.

- :mod:`pilothouse.testing.fake_kube`: an in-process fake of the Kubernetes API (discovery,
  list/watch, server-side apply, delete).
- :mod:`pilothouse.testing.kube_objects`: Pod and InferencePool JSON builders for it.
"""
