"""A second embedding model for model-migration tests, cheap to make: the stock model exported
as a Marquee bundle under another name (int8 with quantized embeddings, so other files and a
different id; a few seconds, reusing the cached fp32 export)."""

from __future__ import annotations

from pathlib import Path

from marquee_shared.model.bundle import export_bundle
from marquee_shared.model.encoder import default_cache_dir, default_model_path
from marquee_shared.model.identity import ModelId


def alt_model(folder: Path) -> tuple[Path, ModelId]:
    """The bundle in ``folder`` (made if absent) and its id."""
    model = export_bundle(
        default_model_path(),
        folder,
        name="stock-alt",
        version="test",
        cache_dir=default_cache_dir(),
    )
    return folder, model
