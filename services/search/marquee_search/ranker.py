"""The learned ranker: a LambdaMART model (LightGBM ``lambdarank``) over the fused candidates.

The model is a small text file shipped in the package (``models/ranker.txt``, its card
``models/RANKER.md``), made by ``make train-ranker`` (bench/train_ranker.py) on the tune split
of tomt_dev only. It scores the features of marquee_search.features; the file carries their
names, and a model whose names differ from the code's is refused at load, so a model and a
feature module can never be mixed silently.

It re-orders descriptions, not lookups: a request of fewer than ``min_words`` words (a title,
a name, a few keywords) keeps the fusion's order, which the title and typo tests hold, and
whose cost stays what it was. The model's version (``lambdarank-<hash of the file>``) is logged
at startup and reported with every search it answered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from marquee_search.features import FEATURE_NAMES

if TYPE_CHECKING:
    from numpy.typing import NDArray

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "ranker.txt"


class RankerModelError(ValueError):
    """A ranker file that cannot serve: unreadable, or trained on other features."""


@dataclass(frozen=True, slots=True)
class RankerParams:
    min_words: int = 8
    """Requests shorter than this keep the fusion's order (titles, names, keywords)."""
    depth: int = 200
    """Fused candidates the model re-orders: all of both sides' top 100 (the union holds the
    answer for 0.51 of tomt_dev's report split, the fused top 100 for 0.45)."""


class LearnedRanker:
    def __init__(self, path: Path = DEFAULT_MODEL, params: RankerParams | None = None) -> None:
        import lightgbm  # noqa: PLC0415 - loaded only where a ranker is used

        self.params = params or RankerParams()
        try:
            text = path.read_text()
            self._booster = lightgbm.Booster(model_str=text)
        except (OSError, lightgbm.basic.LightGBMError) as exc:
            msg = f"cannot load the ranker model {path}: {exc}"
            raise RankerModelError(msg) from exc
        names = tuple(self._booster.feature_name())
        if names != FEATURE_NAMES:
            missing = sorted(set(FEATURE_NAMES) - set(names))
            extra = sorted(set(names) - set(FEATURE_NAMES))
            msg = (
                f"the ranker model {path} was trained on other features than this code computes "
                f"(missing from the model: {missing or 'none'}; unknown to the code: "
                f"{extra or 'none'}; or a different order): retrain it with make train-ranker"
            )
            raise RankerModelError(msg)
        self.version = f"lambdarank-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        self.path = path

    def applies(self, words: int) -> bool:
        return words >= self.params.min_words

    def score(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        if not len(features):
            return np.zeros(0)
        # One thread: a hundred rows are microseconds of work, and the cores serve requests.
        return np.asarray(self._booster.predict(features, num_threads=1), np.float64)
