"""export_bundle on the stock model: the bundle serves (nearly) the same int8 vectors as the
stock model's on-the-fly onnx-int8 export, under an id of its own, and stops at a changed file.

The bundle is exported once per session, from the fp32 export the session's ``encoder``
fixture already cached (only the quantisation runs: a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marquee_shared.index import movie_document
from marquee_shared.model.bundle import export_bundle
from marquee_shared.model.encoder import load_encoder
from marquee_shared.model.files import ModelError, sha256_file
from marquee_shared.model.identity import ModelId
from marquee_shared.model.resolve import resolve_model
from marquee_shared.model.windows import Windower, WindowParams
from tests.integration.search.movies import MOVIES

pytestmark = pytest.mark.integration

ONNX_CACHE = Path.home() / ".cache" / "marquee" / "onnx"
QUERIES = [
    "a shark eats swimmers at a beach town and the police chief hunts it",
    "musical about a girl who wants to be a star",
    "samurai",
]


@pytest.fixture(scope="session")
def stock_bundle(tmp_path_factory: pytest.TempPathFactory, encoder: object) -> tuple[Path, ModelId]:
    # ``encoder`` first: it exports (or finds) the stock model's fp32 ONNX file in the cache.
    stock, _ = resolve_model("stock")
    out = tmp_path_factory.mktemp("bundles") / "stock-int8"
    return out, export_bundle(stock, out, name="stock-int8", version="1", cache_dir=ONNX_CACHE)


def test_the_bundle_ranks_like_the_stock_models_int8_export(
    stock_bundle: tuple[Path, ModelId],
) -> None:
    folder, bundle_id = stock_bundle
    stock_folder, stock_id = resolve_model("stock")
    texts = [movie_document(m) for m in MOVIES] + QUERIES

    from_bundle = load_encoder(folder, "onnx-int8", threads=1).encode(texts)
    on_the_fly = load_encoder(stock_folder, "onnx-int8", threads=1, cache_dir=ONNX_CACHE)
    reference = on_the_fly.encode(texts)
    cosines = np.sum(from_bundle * reference, axis=1)
    # The bundle also stores the token embeddings (Gather) in int8, which the on-the-fly
    # export leaves in fp32 (to keep the file under 30 MB): the vectors agree to about 0.99
    # (0.986 seen on the worst text), and what matters is that they rank the same.
    assert float(cosines.min()) > 0.975, cosines
    n = len(MOVIES)
    bundle_top = np.argmax(from_bundle[n:] @ from_bundle[:n].T, axis=1)
    reference_top = np.argmax(reference[n:] @ reference[:n].T, axis=1)
    assert bundle_top.tolist() == reference_top.tolist()

    # Its own identity: other files (int8 ONNX, not safetensors), so another digest.
    assert (bundle_id.name, bundle_id.version) == ("stock-int8", "1")
    assert not bundle_id.same_vectors(stock_id)
    assert resolve_model(str(folder)) == (folder, bundle_id)


def test_the_manifest_records_every_file_and_the_models_length(
    stock_bundle: tuple[Path, ModelId],
) -> None:
    folder, _ = stock_bundle
    manifest = json.loads((folder / "marquee_model.json").read_text())
    assert manifest["backend"] == "onnx-int8"
    assert manifest["base"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["max_seq_length"] == 256
    on_disk = {p.name for p in folder.iterdir()} - {"marquee_model.json"}
    assert set(manifest["files"]) == on_disk
    assert {"model_qint8.onnx", "tokenizer.json"} <= on_disk
    assert all(manifest["files"][name] == sha256_file(folder / name) for name in on_disk)
    # Query windows over the bundle cut where they do over the stock model.
    long_text = " ".join(
        f"The detective finds clue number {i} in the old house." for i in range(30)
    )
    params = WindowParams(max_tokens=64)
    assert Windower(folder, params).windows(long_text) == Windower(
        resolve_model("stock")[0], params
    ).windows(long_text)


def test_export_never_overwrites_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    stock, _ = resolve_model("stock")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not a Marquee bundle: not overwriting it"):
        export_bundle(stock, precious, name="x", version="1")
    assert (precious / "notes.txt").read_text() == "keep me"
