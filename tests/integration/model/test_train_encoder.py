"""The encoder fine-tuning (bench/train_encoder.py) on tiny fixtures: its split holds every
request for a film on one side, batches never hold a movie twice, catalog pairs never use an
excluded film, and training is reproducible and exports a bundle the services load. The real
run (`make train-encoder`, about 40 minutes) is not part of the tests."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from marquee_shared.events import Movie
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import eval_search as ev
import train_encoder as te


def film(tmdb_id: int, **extra: object) -> Movie:
    fields: dict[str, object] = {
        "tmdb_id": tmdb_id,
        "title": f"Film {tmdb_id}",
        "year": 1990 + tmdb_id % 30,
        "overview": (
            f"A lighthouse keeper number {tmdb_id} finds a map in a bottle on the shore. "
            "He sails north with his daughter to find the island it shows. "
            "A storm breaks the mast and they drift for days."
        ),
        "tagline": "The sea keeps its secrets.",
        "genres": ["Drama", "Adventure"],
        "directors": [f"Director {tmdb_id}"],
        "cast": [f"Actor {tmdb_id}", "Someone Else"],
        "keywords": ["lighthouse", "map", "storm", "island", "daughter"],
    }
    fields.update(extra)
    return Movie.model_validate(fields)


def test_the_movie_split_keeps_every_request_for_a_film_on_one_side() -> None:
    queries = [ev.Query(f"q{i}", "text", answer=i % 50) for i in range(1000)]
    sides: dict[int, set[bool]] = {}
    for q in queries:
        sides.setdefault(q.answer, set()).add(te.held_out(q, "movie"))
    assert all(len(s) == 1 for s in sides.values())
    share = sum(te.held_out(q, "movie") for q in queries) / len(queries)
    assert 0.05 < share < 0.4
    # The random split does split a film's requests.
    assert any(
        len({te.held_out(q, "random") for q in queries if q.answer == a}) == 2 for a in range(50)
    )


def test_the_tune_split_holds_out_exactly_the_reported_requests() -> None:
    queries = [ev.Query(f"q{i}", "text", answer=i % 50) for i in range(1000)]
    held = [q for q in queries if te.held_out(q, "tune")]
    assert held == [q for q in queries if q.split == "report"]
    assert 0 < len(held) < len(queries)


def test_batches_never_hold_a_movie_twice_and_keep_every_pair() -> None:
    pairs = [te.Pair("request", f"q{i}", "doc", movie=i % 7) for i in range(40)]
    pairs += [te.Pair("title", f"t{i}", "doc", movie=i) for i in range(10)]
    plan = te.batches(pairs, te.Recipe(batch_size=8), random.Random(1))
    assert sum(len(b) for b in plan) == len(pairs)
    for batch in plan:
        assert len({p.kind for p in batch}) == 1
        assert max(Counter(p.movie for p in batch).values()) == 1


def test_catalog_pairs_never_use_an_excluded_film() -> None:
    catalog = {i: film(i) for i in range(1, 41)}
    pairs = te.catalog_pairs(catalog, exclude={1, 2, 3}, per_kind=100, rng=random.Random(0))
    assert {p.kind for p in pairs} == {"keywords", "sentence", "title", "names"}
    assert not {p.movie for p in pairs} & {1, 2, 3}
    sentence = next(p for p in pairs if p.kind == "sentence")
    # The sentence used as the query is gone from its positive.
    assert sentence.anchor not in sentence.positive


def test_training_is_reproducible_and_exports_a_bundle_that_loads(tmp_path: Path) -> None:
    from marquee_shared.model.encoder import load_encoder
    from marquee_shared.model.identity import model_id

    catalog = {i: film(i) for i in range(1, 13)}
    rng = random.Random(0)
    pairs = te.catalog_pairs(catalog, set(), per_kind=6, rng=rng)
    recipe = te.Recipe(batch_size=6, max_tokens=32, threads=1)
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        losses = te.train(te.stock_model_path(), pairs[:12], recipe, out)
        assert len(losses) == 2
        assert all(np.isfinite(losses))
        digests.append(model_id(out / "model").digest)
    assert digests[0] == digests[1]
    bundle = te.export(tmp_path / "a")
    shipped = model_id(bundle)
    assert shipped.name == te.NAME
    vectors = load_encoder(bundle, "onnx-int8").encode(["a lighthouse keeper sails north"])
    assert vectors.shape == (1, 384)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-3)
