"""The movie-tuned encoder as this build packages it (shared/marquee_shared/model/bundles/
movie-tuned, made by `make train-encoder`): within the size budget, every file as its manifest
and card say, loadable by name, and it finds films from half-remembered descriptions of them
(none of which it was trained on: these are the tests' own words)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marquee_shared.index import movie_document
from marquee_shared.model.encoder import load_encoder
from marquee_shared.model.files import MANIFEST, sha256_file
from marquee_shared.model.resolve import BUNDLES, MOVIE_TUNED, resolve_model
from tests.integration.search.movies import MOVIES

pytestmark = pytest.mark.integration

FOLDER = BUNDLES / MOVIE_TUNED
DESCRIBED = [
    ("a beach town keeps swimming while a huge fish eats people, and three men hunt it", 578),
    ("a girl's parents turn into pigs and she works in a bathhouse for spirits", 129),
    ("a hacker learns that the world is a computer simulation and joins the rebels", 603),
    ("a writer and his family look after an empty mountain hotel through the winter", 694),
    ("a man with no short-term memory tattoos clues on his body to find a killer", 77),
    ("toys come alive when nobody is watching and a new spaceman toy arrives", 862),
]


def test_the_package_holds_the_bundle_its_manifest_and_card_describe() -> None:
    manifest = json.loads((FOLDER / MANIFEST).read_text())
    on_disk = {p.name for p in FOLDER.iterdir()} - {MANIFEST, "MODEL.md"}
    assert set(manifest["files"]) == on_disk
    assert all(manifest["files"][n] == sha256_file(FOLDER / n) for n in on_disk)
    size = sum(p.stat().st_size for p in FOLDER.iterdir())
    assert size <= 30_000_000, f"{size} bytes: over the 30 MB budget of a committed bundle"
    card = (FOLDER / "MODEL.md").read_text()
    folder, model = resolve_model(MOVIE_TUNED)
    assert folder == FOLDER
    assert str(model) in card  # the card names the id the services report
    assert manifest["files"]["model_qint8.onnx"] in card  # and the checksum of what serves
    assert "| semantic recall@10 |" in card  # every gate, with its figure


def test_it_finds_films_from_descriptions_in_other_words() -> None:
    folder, _ = resolve_model(MOVIE_TUNED)
    encoder = load_encoder(folder, "onnx-int8", threads=1)
    ids = [m.tmdb_id for m in MOVIES]
    docs = encoder.encode([movie_document(m) for m in MOVIES])
    queries = encoder.encode([text for text, _ in DESCRIBED])
    top = [ids[int(i)] for i in np.argmax(queries @ docs.T, axis=1)]
    assert top == [answer for _, answer in DESCRIBED]
