"""The shipped ranker file serves with this code's features, and training it is reproducible
(the same inputs give the same bytes), so `make train-ranker` can be checked by anyone."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from marquee_search.features import FEATURE_NAMES
from marquee_search.ranker import DEFAULT_MODEL, LearnedRanker, RankerModelError
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_the_shipped_model_loads_and_scores() -> None:
    ranker = LearnedRanker(DEFAULT_MODEL)
    assert ranker.version.startswith("lambdarank-")
    x = np.random.default_rng(0).normal(size=(7, len(FEATURE_NAMES))).astype(np.float32)
    x[:, 3] = np.nan  # missing values are allowed
    scores = ranker.score(x)
    assert scores.shape == (7,)
    assert np.isfinite(scores).all()
    assert ranker.applies(8)
    assert not ranker.applies(3)


def test_a_model_on_other_features_is_refused(tmp_path) -> None:
    text = DEFAULT_MODEL.read_text().replace("year_gap", "release_gap", 1)
    (tmp_path / "m.txt").write_text(text)
    with pytest.raises(RankerModelError, match="release_gap"):
        LearnedRanker(tmp_path / "m.txt")


def synthetic(seed: int):  # type: ignore[no-untyped-def]
    import eval_search as ev
    import ranking

    rng = np.random.default_rng(seed)
    data = ranking.Collected([])
    for i in range(60):
        n = 20
        x = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
        answer = int(np.argmax(x[:, 0] + 0.3 * rng.normal(size=n)))
        ids = list(range(i * 100, i * 100 + n))
        data.queries.append(ev.Query(f"q{i}", "some request text here", ids[answer]))
        data.ids.append(ids)
        data.fused.append(ids)
        data.features.append(x)
        data.words.append(10)
    return data


def test_training_is_deterministic() -> None:
    import train_ranker

    data = synthetic(3)
    params = {"num_leaves": 7, "min_data_in_leaf": 5}
    first = train_ranker.train(data, range(60), params, 30).model_to_string()
    second = train_ranker.train(data, range(60), params, 30).model_to_string()
    assert first == second
    # And it learned the signal planted in the first feature.
    model = train_ranker.train(data, range(40), params, 30)
    held_out = train_ranker.measure(
        data, range(40, 60), train_ranker.predict(model, data, range(40, 60)), 0
    )
    fused = train_ranker.measure(data, range(40, 60), None, 0)
    assert held_out["mrr@10"] > fused["mrr@10"]
