"""Tokenisation shared by the keyword index and its queries: both sides must agree exactly.

Accents are folded (``Amélie`` matches ``amelie``), possessives dropped, other apostrophes
joined (``don't`` -> ``dont``), English stop words removed and the rest stemmed with Snowball
(``sharks`` matches ``shark``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer  # type: ignore[import-not-found]  # PyStemmer ships no type information

_WORD = re.compile(r"\w+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_POSSESSIVE = re.compile(r"(?<=\w)['\u2019]s\b")
_APOSTROPHES = re.compile(r"(?<=\w)['\u2019](?=\w)")

_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    im ive id dont didnt doesnt isnt wasnt cant couldnt wont s t
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
"""Words too common to say anything about a movie; a query made only of them finds nothing
by keyword (the dense side still answers it in hybrid mode)."""

_stemmer = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # Cached: the same few tens of thousands of words recur across the catalog and queries.
    stem: str = _stemmer.stemWord(word)
    return stem


def fold(text: str) -> str:
    """Lower case without accents: what tokens and fuzzy title matching compare."""
    folded = text.casefold()
    if folded.isascii():  # most text: nothing to decompose
        return folded
    return _COMBINING.sub("", unicodedata.normalize("NFKD", folded))


def words(text: str) -> list[str]:
    """The folded words of a text, stop words out, not stemmed (typo tolerance compares
    these: ``shinign`` is one swap from ``shining`` but two edits from its stem ``shine``)."""
    # "Amélie's" is Amélie (not "amelies"); "don't" is one word, "dont".
    found = _WORD.findall(_APOSTROPHES.sub("", _POSSESSIVE.sub("", fold(text))))
    return [w for w in found if w not in STOP_WORDS and w != "_"]


def stem(word: str) -> str:
    return _stem(word)


def tokenize(text: str) -> list[str]:
    """Index terms of a text, in order, repeats kept (term frequency counts them)."""
    return [_stem(w) for w in words(text)]
