"""Long requests become windows of whole sentences within the model's limit; short ones stay
one window, the text itself (the same path and cost as before windows existed)."""

from __future__ import annotations

import numpy as np
import pytest

from marquee_shared.model.encoder import default_model_path
from marquee_shared.model.windows import Windower, WindowParams, combine


@pytest.fixture(scope="module")
def windower() -> Windower:
    return Windower(default_model_path(), WindowParams(max_tokens=32))


def pieces(windower: Windower, text: str) -> int:
    return len(windower._tokenizer.encode(text, add_special_tokens=False).ids)


def test_a_short_request_is_one_window_the_text_itself(windower: Windower) -> None:
    assert windower.windows("the dark knigth") == ["the dark knigth"]


def test_a_long_request_is_cut_by_sentence_within_the_limit(windower: Windower) -> None:
    sentences = [
        f"Sentence number {i} says the hero walks into a very dark forest at night."
        for i in range(8)
    ]
    text = " ".join(sentences)
    windows = windower.windows(text)
    assert windows[0] == text, "the head: the request whole"
    parts = windows[1:]
    assert len(parts) > 1
    assert all(pieces(windower, w) <= 32 for w in parts)
    # Whole sentences, in order, nothing lost or repeated.
    assert " ".join(parts) == text
    assert all(w.endswith(".") for w in parts)


def test_a_run_on_sentence_is_cut_into_runs_of_words(windower: Windower) -> None:
    text = " ".join(["and then the boy ran"] * 40)  # no sentence end at all
    parts = windower.windows(text)[1:]
    assert len(parts) > 2
    assert all(pieces(windower, w) <= 32 for w in parts)
    assert " ".join(parts).split() == text.split()


def test_windows_are_capped(windower: Windower) -> None:
    text = " ".join(f"This is sentence {i} of a very long story about a ship." for i in range(200))
    assert len(windower.windows(text)) == 1 + windower.params.max_windows


def test_without_the_head_only_windows_are_encoded() -> None:
    windower = Windower(default_model_path(), WindowParams(max_tokens=16, head=False))
    text = "A ship sinks in the cold sea at night. " * 6
    assert text not in windower.windows(text)


def test_combine_mixes_head_best_and_mean() -> None:
    sims = np.asarray([[0.5, 0.9, 0.1], [0.4, 0.4, 0.4]], np.float32)
    params = WindowParams(head=True, max_weight=0.5, head_weight=0.5)
    score, head, best, mean = combine(sims, params)
    np.testing.assert_allclose(head, [0.5, 0.4])
    np.testing.assert_allclose(best, [0.9, 0.4])
    np.testing.assert_allclose(mean, [0.5, 0.4])
    np.testing.assert_allclose(score, [0.5 * 0.5 + 0.5 * (0.5 * 0.9 + 0.5 * 0.5), 0.4], rtol=1e-6)


def test_one_window_is_its_own_cosine_everywhere() -> None:
    sims = np.asarray([[0.3], [0.7]], np.float32)
    for part in combine(sims, WindowParams()):
        np.testing.assert_allclose(part, [0.3, 0.7])
