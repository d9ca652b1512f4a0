"""Who a model is: ``name@version+digest``, where the digest is the first 12 hex digits of a
sha256 over the files that define its vectors (``files.vector_files`` for a
sentence-transformers folder; the ONNX file, ``tokenizer.json`` and the maximum length for a
bundle). Two folders with the same digest give the same vectors whatever their names, so ids
are compared by digest; the name and version are for people.

The id is stamped on the Chroma collection (``marquee_shared.chroma``) and reported by
``/ready``, ``/metrics`` (``marquee_model_info``) and the gateway's ``/v1/stats``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from marquee_shared.model.files import (
    BUNDLE_ONNX,
    TOKENIZER,
    ModelError,
    is_bundle,
    sha256_file,
    vector_files,
    verify_bundle,
)

if TYPE_CHECKING:
    from pathlib import Path

DIGEST_CHARS = 12
_ID = re.compile(r"^(?P<name>.+)@(?P<version>[^@+]+)\+(?P<digest>[0-9a-f]{12})$")

MODEL_INFO = Gauge(
    "marquee_model_info",
    "The embedding model this process serves, as a label (always 1)",
    ["service", "model"],
)
_reported: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class ModelId:
    name: str
    version: str
    digest: str
    """First 12 hex digits of the sha256 over the files that define the vectors."""

    def __str__(self) -> str:
        return f"{self.name}@{self.version}+{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ModelId:
        match = _ID.match(text.strip())
        if match is None:
            msg = f"not a model id (name@version+12 hex digits): {text!r}"
            raise ValueError(msg)
        return cls(match["name"], match["version"], match["digest"])

    def same_vectors(self, other: ModelId) -> bool:
        """Same files, so the same vector space (names and versions may differ)."""
        return self.digest == other.digest


def model_id(folder: Path, *, name: str | None = None, version: str | None = None) -> ModelId:
    """The id of a model folder of either kind. A bundle's name and version come from its
    manifest (and its files are verified against it); a sentence-transformers folder is named
    ``name`` (default: the folder's name) at ``version`` (default ``local``). The hashing is
    cached per process: a service pays it once, at startup."""
    if is_bundle(folder):
        manifest = verify_bundle(folder)
        lines = [
            f"{BUNDLE_ONNX}\0{manifest.files[BUNDLE_ONNX]}",
            f"{TOKENIZER}\0{manifest.files[TOKENIZER]}",
            f"max_seq_length\0{manifest.max_seq_length}",
        ]
        return ModelId(name or manifest.name, version or manifest.version, _digest(lines))
    if not folder.is_dir():
        msg = f"model folder {folder} does not exist"
        raise ModelError(msg)
    lines = [f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}" for p in vector_files(folder)]
    return ModelId(name or folder.resolve().name, version or "local", _digest(lines))


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:DIGEST_CHARS]


def report_model(service: str, model: ModelId) -> None:
    """Set ``marquee_model_info{service,model} 1`` (replacing this service's previous id)."""
    previous = _reported.get(service)
    if previous is not None and previous != str(model):
        MODEL_INFO.remove(service, previous)
    MODEL_INFO.labels(service, str(model)).set(1)
    _reported[service] = str(model)
