"""Telling lookups from descriptions, so that each is fused the way it is best answered.

People type two different things into one box: a *lookup* (a title as they remember it,
``the dark knigth``; a person's name, ``wes anderson comedy``) and a *description* of a film
(``a teen sent thirty years into the past in a scientist's sports car``). The keyword side is
nearly perfect on lookups (a whole-title match, a full name in the cast or director field),
while the dense side is what answers descriptions; a movie-tuned encoder sharpens the second
and blunts the first. One fusion weight for both makes each kind pay for the other.

A short request is a lookup when the keyword index itself says so: a catalog title is nearly
the whole request (``title_similarity``), or the best keyword hit's cast and director fields
hold at least ``name_terms`` of the request's words. Lookups are fused with ``lookup_alpha``
(the dense side's share), descriptions with the fusion's own ``alpha``. Thresholds and weight
are chosen on lookups made from films the reported sets never use and on the tomt_dev tune
split (bench/tune_kinds.py); docs/evaluation.md has the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from marquee_search.keyword import DEFAULT_BM25, FIELDS, Bm25Params, KeywordIndex

Kind = Literal["lookup", "description"]

_NAME_COLUMNS = [FIELDS.index("cast"), FIELDS.index("directors")]


@dataclass(frozen=True, slots=True)
class KindParams:
    enabled: bool = True
    max_words: int = 6
    """Longer requests are descriptions whatever they match."""
    title_similarity: float = 85.0
    """A catalog title at least this similar (0-100) to the whole request: a title lookup
    (tuned: 85, the keyword side's own whole-title cutoff, beat 90 and 95 on typos)."""
    name_terms: int = 2
    """The best keyword hit's cast and director fields hold this many request words: a name."""
    lookup_alpha: float = 0.5
    """The dense side's share when fusing a lookup (descriptions keep FusionParams.alpha,
    0.8); 0.2 to 0.5 tuned alike, 0.65 lost a third of the name lookups' gain."""


DEFAULT_KINDS = KindParams()


def classify(
    index: KeywordIndex,
    text: str,
    top_row: int | None,
    params: KindParams = DEFAULT_KINDS,
    bm25: Bm25Params | None = None,
) -> Kind:
    """The kind of ``text``; ``top_row`` is the keyword side's best row (None: no match)."""
    if not params.enabled or top_row is None or len(text.split()) > params.max_words:
        return "description"
    bm25 = bm25 or DEFAULT_BM25
    # The keyword side has just matched titles at its own cutoff: the same call is memoised.
    cutoff = min(params.title_similarity, bm25.title_min_similarity)
    if any(s >= params.title_similarity for _, s in index.title_matches(text, cutoff)):
        return "lookup"
    _, matched, _ = index.field_scores(text, np.asarray([top_row], np.intp), bm25)
    # One field, not their sum: a director who also acts would count each word twice.
    if matched[0, _NAME_COLUMNS].max() >= params.name_terms:
        return "lookup"
    return "description"
