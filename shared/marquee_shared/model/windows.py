"""Long requests as several windows of the model's input, and how their similarities combine.

all-MiniLM-L6-v2 reads at most 256 word pieces (it was trained on 128) and the encoder cuts
the rest: of a 2,000-character description it would see the first half. A request longer than
``max_tokens`` is cut into windows of whole sentences (a sentence longer than a window into
runs of words), each at most ``max_tokens`` pieces of the chosen model's own tokenizer (fewer
if that model reads fewer), encoded in one batch; a movie's dense score is then a mix of its
best window's cosine and the windows' mean (``WindowParams``, chosen on the tune split of
tomt_dev: bench/eval_search.py --tune, docs/evaluation.md). A request that fits is one window,
the text itself: short queries take the same path, at the same cost, as before windows
existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from marquee_shared.model.files import TOKENIZER, max_seq_length

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import NDArray

SPECIAL_TOKENS = 2
"""[CLS] and [SEP]: the encoder adds them to every window, within the model's length."""
_SENTENCE_END = re.compile(r"(?<=[.!?;\u2026])\s+|\s*\n\s*")


@dataclass(frozen=True, slots=True)
class WindowParams:
    max_tokens: int = 128
    """Word pieces per window (all-MiniLM-L6-v2 reads 256; it was trained on 128). Capped at
    what the chosen model reads."""
    head: bool = True
    """Also encode the request whole (cut at the model's limit) as one more window."""
    max_weight: float = 0.5
    """Of the windows' part of the dense score, this much is the best window's cosine, the
    rest the windows' mean."""
    head_weight: float = 0.5
    """With ``head``, the whole request's share of the dense score."""
    max_windows: int = 16
    """At most this many windows (a 2,000-character request makes about four of 128)."""


DEFAULT_WINDOWS = WindowParams()


class Windower:
    """Cuts text into windows by the model's own tokenizer (word pieces, not characters).
    ``model_path``: the model's folder, of either kind (``files.py``)."""

    def __init__(self, model_path: Path, params: WindowParams = DEFAULT_WINDOWS) -> None:
        from tokenizers import Tokenizer  # noqa: PLC0415 - the model's tokenizer, no truncation

        self.params = params
        self.limit = min(params.max_tokens, max_seq_length(model_path) - SPECIAL_TOKENS)
        """Word pieces per window: ``max_tokens``, or less if the model reads less."""
        self._tokenizer = Tokenizer.from_file(str(model_path / TOKENIZER))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def _count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def windows(self, text: str) -> list[str]:
        """The texts to encode for a request: itself when it fits one window."""
        return _windows(self, text)

    def split(self, text: str) -> list[str]:
        limit = self.limit
        if self._count(text) <= limit:
            return [text]
        pieces: list[tuple[str, int]] = []
        for raw in _SENTENCE_END.split(text):
            sentence = raw.strip()
            if not sentence:
                continue
            size = self._count(sentence)
            if size <= limit:
                pieces.append((sentence, size))
                continue
            # A run-on sentence (common in typed requests): runs of words that fit.
            run: list[str] = []
            for word in sentence.split():
                if run and self._count(" ".join([*run, word])) > limit:
                    joined = " ".join(run)
                    pieces.append((joined, self._count(joined)))
                    run = []
                run.append(word)
            if run:
                joined = " ".join(run)
                pieces.append((joined, self._count(joined)))
        # Greedy packing of consecutive sentences: fewer, fuller windows keep their context.
        out: list[str] = []
        current: list[str] = []
        used = 0
        for sentence, size in pieces:
            if current and used + size > limit:
                out.append(" ".join(current))
                current, used = [], 0
            current.append(sentence)
            used += size
        if current:
            out.append(" ".join(current))
        return out


@lru_cache(maxsize=4096)
def _cached_split(windower: Windower, text: str) -> tuple[str, ...]:
    return tuple(windower.split(text))


def _windows(windower: Windower, text: str) -> list[str]:
    parts = list(_cached_split(windower, text))
    if len(parts) == 1:
        return parts
    parts = parts[: windower.params.max_windows]
    return [text, *parts] if windower.params.head else parts


def combine(
    sims: NDArray[np.float32], params: WindowParams = DEFAULT_WINDOWS
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """From (movies x windows) cosines, as laid out by ``Windower.windows``: the dense score,
    and the head's, best window's and mean window's cosines (features for the ranker). One
    window: all four are its cosine."""
    if sims.shape[1] == 1:
        only = sims[:, 0]
        return only, only, only, only
    if params.head:
        head, parts = sims[:, 0], sims[:, 1:]
    else:
        head, parts = sims.mean(axis=1), sims
    best = parts.max(axis=1)
    mean = parts.mean(axis=1)
    mixed = params.max_weight * best + (1 - params.max_weight) * mean
    score = params.head_weight * head + (1 - params.head_weight) * mixed if params.head else mixed
    return score.astype(np.float32), head, best, mean
