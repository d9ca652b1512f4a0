"""What the learned ranker knows about a request and each of its candidates.

One implementation for training (bench/train_ranker.py) and for serving (engine.py): the
training script asks the search engine for candidates and these features exactly as a query
does, so what the model learned is what it sees.

Request side (``RequestCues``, parsed once per request): its length, how hedged it is, and the
facts people state about the film they are looking for: a year or decade ("late 90s", "when I
was a kid in 2005"), genre and medium words ("animated", "horror", "documentary"), language or
country words ("korean", "french", "anime"), black-and-white or silent. Candidate side: dense
similarities (whole request, best window, mean window), BM25 per field and how much of the
title the request covers, the fusion's score and ranks, popularity, and each cue checked
against the movie's year, genres and language. Missing values are NaN, which LightGBM treats
as "unknown" rather than as zero: "no decade mentioned" is not "decade mismatch".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz, process

from marquee_search.keyword import FIELDS
from marquee_search.text import fold, words

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from marquee_search.catalog import CatalogMirror

# -- request cues ---------------------------------------------------------------------------

_YEAR = re.compile(r"(?<![\d$£€])(19[0-9]{2}|20[0-2][0-9])(?!\s*(?:dollars|\$|%|km|miles))\b")
_DECADE = re.compile(
    r"\b(?:(early|mid|late)[\s-]*)?(?:(19|20)?([0-9])0|'([0-9])0)['\u2019]?s\b", re.IGNORECASE
)
_PART_OF_DECADE = re.compile(r"\b(early|mid|late)[\s-]*(19|20)([0-9])0\b", re.IGNORECASE)
"""'early 2000', 'late 1980': a part of that decade, said without the s."""
_HEDGES = (
    "i think",
    "i believe",
    "maybe",
    "might",
    "not sure",
    "possibly",
    "probably",
    "could be",
    "can't remember",
    "cant remember",
    "don't remember",
    "dont remember",
    "vague",
    "kind of",
    "sort of",
    "or something",
    "if i recall",
    "i guess",
)
GENRE_CUES: dict[str, str] = {
    "animated": "Animation",
    "animation": "Animation",
    "cartoon": "Animation",
    "cartoons": "Animation",
    "anime": "Animation",
    "claymation": "Animation",
    "pixar": "Animation",
    "horror": "Horror",
    "slasher": "Horror",
    "scary": "Horror",
    "documentary": "Documentary",
    "documentaries": "Documentary",
    "comedy": "Comedy",
    "comedic": "Comedy",
    "funny": "Comedy",
    "spoof": "Comedy",
    "parody": "Comedy",
    "romcom": "Romance",
    "romance": "Romance",
    "romantic": "Romance",
    "scifi": "Science Fiction",
    "dystopian": "Science Fiction",
    "futuristic": "Science Fiction",
    "thriller": "Thriller",
    "action": "Action",
    "fantasy": "Fantasy",
    "western": "Western",
    "cowboy": "Western",
    "cowboys": "Western",
    "wwii": "War",
    "ww2": "War",
    "musical": "Music",
    "heist": "Crime",
    "gangster": "Crime",
    "mafia": "Crime",
    "mystery": "Mystery",
    "detective": "Mystery",
    "historical": "History",
    "drama": "Drama",
}
_GENRE_PHRASES = {
    "sci-fi": "Science Fiction",
    "sci fi": "Science Fiction",
    "science fiction": "Science Fiction",
    "rom-com": "Romance",
    "stop motion": "Animation",
    "stop-motion": "Animation",
    "world war": "War",
    "made for tv": "TV Movie",
    "made-for-tv": "TV Movie",
    "tv movie": "TV Movie",
    "kids movie": "Family",
    "family movie": "Family",
    "children's movie": "Family",
}
LANGUAGE_CUES: dict[str, tuple[str, ...]] = {
    "korean": ("ko",),
    "french": ("fr",),
    "japanese": ("ja",),
    "anime": ("ja",),
    "chinese": ("zh", "cn"),
    "mandarin": ("zh",),
    "cantonese": ("cn",),
    "hong": ("cn", "zh"),
    "bollywood": ("hi",),
    "hindi": ("hi",),
    "indian": ("hi", "ta", "te", "ml", "bn"),
    "spanish": ("es",),
    "mexican": ("es",),
    "argentinian": ("es",),
    "german": ("de",),
    "italian": ("it",),
    "russian": ("ru",),
    "soviet": ("ru",),
    "swedish": ("sv",),
    "danish": ("da",),
    "norwegian": ("no", "nb"),
    "thai": ("th",),
    "turkish": ("tr",),
    "polish": ("pl",),
    "portuguese": ("pt",),
    "brazilian": ("pt",),
    "dutch": ("nl",),
    "iranian": ("fa",),
    "persian": ("fa",),
    "finnish": ("fi",),
    "greek": ("el",),
    "hungarian": ("hu",),
    "czech": ("cs",),
    "arabic": ("ar",),
    "israeli": ("he",),
    "hebrew": ("he",),
    "icelandic": ("is",),
    "indonesian": ("id",),
    "filipino": ("tl",),
    "vietnamese": ("vi",),
}
FOREIGN_CUES = frozenset({"foreign", "subtitles", "subtitled", "dubbed", "dub"})
_BLACK_AND_WHITE = re.compile(r"\bblack[\s-]*(?:and|&|n)[\s-]*white\b|\bb\s*[&/]\s*w\b")
_SILENT = re.compile(r"\bsilent (?:film|movie|era)\b")
OLD_CUES = frozenset({"old", "older", "classic", "vintage", "oldie"})
RECENT_CUES = frozenset({"recent", "newer", "new", "modern"})


@dataclass(frozen=True, slots=True)
class RequestCues:
    """What a request says about itself and about the film it looks for."""

    chars: int
    words: int
    windows: int
    hedges: int
    years: tuple[tuple[int, int], ...] = ()
    """Release-year intervals mentioned: a year (y, y), a decade, early/mid/late a decade."""
    genres: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    foreign: bool = False
    black_and_white: bool = False
    silent: bool = False
    old: bool = False
    recent: bool = False
    terms: int = 0
    """Distinct searchable words (stop words out): how much the keyword side had to go on."""
    folded: str = field(default="", repr=False)


def _decade_interval(match: re.Match[str]) -> tuple[int, int] | None:
    part, century, digit, short_digit = match.groups()
    d = int(digit if digit is not None else short_digit)
    # Without a century, '00s to '20s are this century's and '30s to '90s the last.
    default_century = 20 if d <= 2 else 19
    start = int(century or default_century) * 100 + d * 10
    if start < 1890 or start > 2030:
        return None
    if part is None:
        return start, start + 9
    offset = {"early": 0, "mid": 3, "late": 6}[part.lower()]
    return start + offset, start + offset + 3


def parse_request(text: str, windows: int = 1) -> RequestCues:
    folded = fold(text)
    tokens = words(text)
    token_set = set(tokens)
    years: list[tuple[int, int]] = []
    for match in _DECADE.finditer(folded):
        interval = _decade_interval(match)
        if interval is not None:
            years.append(interval)
    for match in _PART_OF_DECADE.finditer(folded):
        part, century, digit = match.groups()
        start = int(century) * 100 + int(digit) * 10
        offset = {"early": 0, "mid": 3, "late": 6}[part.lower()]
        years.append((start + offset, start + offset + 3))
    years += [(int(y), int(y)) for y in _YEAR.findall(folded)]
    genres = {GENRE_CUES[t] for t in token_set if t in GENRE_CUES}
    genres |= {g for phrase, g in _GENRE_PHRASES.items() if phrase in folded}
    languages = {code for t in token_set if t in LANGUAGE_CUES for code in LANGUAGE_CUES[t]}
    return RequestCues(
        chars=len(text),
        words=len(text.split()),
        windows=windows,
        hedges=sum(folded.count(h) for h in _HEDGES),
        years=tuple(dict.fromkeys(years)),
        genres=frozenset(genres),
        languages=frozenset(languages),
        foreign=bool(token_set & FOREIGN_CUES),
        black_and_white=bool(_BLACK_AND_WHITE.search(folded)),
        silent=bool(_SILENT.search(folded)),
        old=bool(token_set & OLD_CUES),
        recent=bool(token_set & RECENT_CUES),
        terms=len(token_set),
        folded=" ".join(folded.split()),
    )


# -- candidate features ---------------------------------------------------------------------

FEATURE_NAMES: tuple[str, ...] = (
    # dense
    "dense",
    "dense_head",
    "dense_max",
    "dense_mean",
    "dense_gap",
    "dense_rank",
    # keyword
    *(f"bm25_{name}" for name in FIELDS),
    "bm25f",
    "bm25f_share",
    "keyword_rank",
    "title_coverage",
    "title_similarity",
    "name_matches",
    "keyword_matches",
    "overview_coverage",
    # fusion
    "fused",
    "fused_rank",
    "prf_top5",
    "prf_top20",
    # the movie
    "year",
    "log_votes",
    "rating",
    "log_popularity",
    "english",
    # cues against the movie
    "year_gap",
    "year_abs_gap",
    "genre_matches",
    "genre_share",
    "language_match",
    "foreign_match",
    "black_and_white_era",
    "silent_era",
    # the request
    "request_log_chars",
    "request_words",
    "request_windows",
    "request_hedges",
    "request_terms",
    "cue_year",
    "cue_genre",
    "cue_language",
    "cue_old",
    "cue_recent",
)
FEATURES = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True, slots=True)
class CandidateSignals:
    """What retrieval already computed for the candidates (one entry per candidate row)."""

    rows: NDArray[np.intp]
    dense: NDArray[np.float32]
    dense_head: NDArray[np.float32]
    dense_max: NDArray[np.float32]
    dense_mean: NDArray[np.float32]
    bm25f: NDArray[np.float32]
    """0 where the keyword side did not find the movie."""
    fused: NDArray[np.float32]
    vectors: NDArray[np.float32] | None = None
    """The candidates' unit vectors where the mirror holds them (else the PRF features are
    unknown)."""


def _ranks(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """1 for the highest value; ties share the better rank's order by position (stable)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), np.float32)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float32)
    return ranks


def _year_gaps(
    years: NDArray[np.float64], intervals: tuple[tuple[int, int], ...]
) -> NDArray[np.float64]:
    """Signed distance of each release year to the closest interval mentioned (0 inside,
    negative before it, positive after); NaN without a year or an interval."""
    if not intervals:
        return np.full(len(years), np.nan)
    gaps = np.stack([years - np.clip(years, lo, hi) for lo, hi in intervals])
    pick = np.nanargmin(np.where(np.isnan(gaps), np.inf, np.abs(gaps)), axis=0)
    closest: NDArray[np.float64] = gaps[pick, np.arange(len(years))]
    return closest


def candidate_features(
    cues: RequestCues, signals: CandidateSignals, mirror: CatalogMirror, text: str
) -> NDArray[np.float32]:
    """The (candidates x FEATURE_NAMES) matrix the ranker scores."""
    x = np.full((len(signals.rows), len(FEATURE_NAMES)), np.nan, np.float32)
    if len(signals.rows):
        put = _Writer(x)
        _retrieval(put, cues, signals, mirror, text)
        _movie_and_cues(put, cues, signals.rows, mirror)
        _request(put, cues)
    return x


class _Writer:
    def __init__(self, x: NDArray[np.float32]) -> None:
        self.x = x

    def __call__(self, name: str, values: object) -> None:
        self.x[:, FEATURES[name]] = values  # type: ignore[call-overload]


def _retrieval(
    put: _Writer, cues: RequestCues, signals: CandidateSignals, mirror: CatalogMirror, text: str
) -> None:
    put("dense", signals.dense)
    put("dense_head", signals.dense_head)
    put("dense_max", signals.dense_max)
    put("dense_mean", signals.dense_mean)
    put("dense_gap", signals.dense - signals.dense.max())
    put("dense_rank", _ranks(signals.dense))
    scores, matched, lengths = mirror.keyword.field_scores(text, signals.rows)
    for column, name in enumerate(FIELDS):
        put(f"bm25_{name}", scores[:, column])
    top = float(signals.bm25f.max())
    put("bm25f", signals.bm25f)
    put("bm25f_share", signals.bm25f / top if top > 0 else 0.0)
    put("keyword_rank", np.where(signals.bm25f > 0, _ranks(signals.bm25f), np.nan))
    title = FIELDS.index("title")
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = matched[:, title] / lengths[:, title]
    put("title_coverage", np.where(lengths[:, title] > 0, coverage, np.nan))
    put("overview_coverage", matched[:, FIELDS.index("overview")] / max(cues.terms, 1))
    put("name_matches", matched[:, FIELDS.index("cast")] + matched[:, FIELDS.index("directors")])
    put("keyword_matches", matched[:, FIELDS.index("keywords")])
    # One C call over all candidates' titles (the same fuzz.ratio, not one call each).
    titles = [mirror.keyword.title_key(int(r)) for r in signals.rows]
    put("title_similarity", process.cdist([cues.folded], titles, scorer=fuzz.ratio)[0])
    put("fused", signals.fused)
    put("fused_rank", _ranks(signals.fused))
    if signals.vectors is not None:
        # Pseudo-relevance feedback: how close a candidate is to what the best fused
        # candidates have in common (their mean vector). The answer tends to sit among
        # films like the top ones; a stray lexical match does not.
        order = np.argsort(-signals.fused, kind="stable")
        for n in (5, 20):
            centre = signals.vectors[order[:n]].mean(axis=0)
            norm = float(np.linalg.norm(centre))
            put(f"prf_top{n}", signals.vectors @ (centre / norm if norm > 0 else centre))


def _movie_and_cues(
    put: _Writer, cues: RequestCues, rows: NDArray[np.intp], mirror: CatalogMirror
) -> None:
    years = mirror.year[rows]
    put("year", years)
    put("log_votes", np.log1p(mirror.votes[rows]))
    put("rating", mirror.rating[rows])
    put("log_popularity", np.log1p(mirror.popularity[rows]))
    english = mirror.language_code("en")
    language = mirror.language[rows]
    put("english", np.where(language < 0, np.nan, language == english))
    gaps = _year_gaps(years, cues.years)
    put("year_gap", gaps)
    put("year_abs_gap", np.abs(gaps))
    if cues.genres:
        have = mirror.genres[rows]
        matches = np.zeros(len(rows), np.float32)
        for genre in sorted(cues.genres):
            matches += (have & mirror.genre_mask([genre])) != 0
        put("genre_matches", matches)
        put("genre_share", matches / len(cues.genres))
    if cues.languages:
        codes = [c for c in (mirror.language_code(code) for code in cues.languages) if c >= 0]
        put("language_match", np.where(language < 0, np.nan, np.isin(language, codes)))
    if cues.foreign:
        put("foreign_match", np.where(language < 0, np.nan, language != english))
    if cues.black_and_white:
        put("black_and_white_era", years < 1966)
    if cues.silent:
        put("silent_era", years < 1930)


def _request(put: _Writer, cues: RequestCues) -> None:
    put("request_log_chars", math.log1p(cues.chars))
    put("request_words", cues.words)
    put("request_windows", cues.windows)
    put("request_hedges", cues.hedges)
    put("request_terms", cues.terms)
    put("cue_year", float(bool(cues.years)))
    put("cue_genre", float(len(cues.genres)))
    put("cue_language", float(bool(cues.languages) or cues.foreign))
    put("cue_old", float(cues.old or cues.black_and_white or cues.silent))
    put("cue_recent", float(cues.recent))
