"""Model folders of both kinds built from small files: identities and manifest checks read
files and hashes, never weights, so no model is loaded."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from marquee_shared.model.encoder import default_model_path


def write_st_folder(folder: Path, weights: bytes = b"weights") -> Path:
    """A sentence-transformers folder: the stock model's small files, made-up weights."""
    stock = default_model_path()
    folder.mkdir(parents=True)
    for name in (
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "modules.json",
        "README.md",
    ):
        shutil.copyfile(stock / name, folder / name)
    (folder / "1_Pooling").mkdir()
    shutil.copyfile(stock / "1_Pooling" / "config.json", folder / "1_Pooling" / "config.json")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def write_bundle(folder: Path, *, max_seq_length: int = 256, name: str = "movie-tuned") -> Path:
    """A Marquee bundle whose manifest matches its files (the ONNX file is made up)."""
    folder.mkdir(parents=True)
    (folder / "model_qint8.onnx").write_bytes(b"not really onnx")
    shutil.copyfile(default_model_path() / "tokenizer.json", folder / "tokenizer.json")
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    manifest = {
        "name": name,
        "version": "1",
        "base": "sentence-transformers/all-MiniLM-L6-v2",
        "backend": "onnx-int8",
        "max_seq_length": max_seq_length,
        "files": files,
    }
    (folder / "marquee_model.json").write_text(json.dumps(manifest))
    return folder
