"""One explanation, end to end: retrieve the context from Chroma, look in the cache, generate
once (Claude when configured, else or on failure the deterministic explainer), validate."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from marquee_explainer import deterministic, prompt
from marquee_explainer.cache import ExplanationCache, cache_key
from marquee_explainer.catalog import (
    Catalog,
    CatalogTitles,
    MovieRecord,
    NoKnownTasteError,
)
from marquee_explainer.context import ExplainContext, search_hit_context, taste_context
from marquee_explainer.deterministic import deterministic_draft
from marquee_explainer.titles import Strictness, TitleIndex
from marquee_explainer.validation import Verdict, validate
from marquee_shared.api import (
    Explanation,
    FallbackReason,
    SearchHitExplanationRequest,
    TasteExplanationRequest,
)
from marquee_shared.httpapi import MovieNotFoundError

if TYPE_CHECKING:
    from marquee_explainer.claude import ClaudeWriter
    from marquee_explainer.settings import ExplainerSettings

log = structlog.get_logger(__name__)

MAX_NAMED = 3
"""Movies a query may name ("like Zodiac") that join a search hit's context."""
NAMING_WORDS = frozenset({"like", "than", "as", "to", "of"})

EXPLANATIONS = Counter(
    "marquee_explainer_explanations_total",
    "Explanations served, by kind, generator and cache outcome",
    ["kind", "generator", "cached"],
)


class Explainer:
    def __init__(
        self,
        catalog: Catalog,
        titles: CatalogTitles,
        cache: ExplanationCache,
        writer: ClaudeWriter | None,
        settings: ExplainerSettings,
    ) -> None:
        self._catalog = catalog
        self._titles = titles
        self._cache = cache
        self._writer = writer
        self._settings = settings

    @property
    def generator(self) -> str:
        return self._writer.model if self._writer else "deterministic"

    def _versions(self) -> list[object]:
        s = self._settings
        return [
            prompt.VERSION,
            deterministic.VERSION,
            self.generator,
            s.context_liked,
            s.taste_block_movies,
        ]

    async def explain_taste(self, request: TasteExplanationRequest) -> Explanation:
        liked_ids, disliked_ids = request.liked_ids(), request.disliked_ids()
        records = await self._catalog.records([request.target_id, *liked_ids, *disliked_ids])
        target = records.get(request.target_id)
        if target is None:
            raise MovieNotFoundError(request.target_id)
        liked = [records[i] for i in liked_ids if i in records]
        disliked = [records[i] for i in disliked_ids if i in records]
        if liked_ids and not liked:
            raise NoKnownTasteError(liked_ids)
        self._titles.add(r.movie for r in records.values())
        ctx = taste_context(
            target,
            liked,
            disliked,
            self._titles.index,
            nearest=self._settings.context_liked,
            taste_block=self._settings.taste_block_movies,
        )
        key = cache_key(
            {
                "kind": "taste",
                "target": _hashed([target]),
                # The taste is a set: the same movies in another order get the same answer.
                "liked": sorted(_hashed(liked)),
                "disliked": sorted(_hashed(disliked)),
                "versions": self._versions(),
            }
        )
        unknown = [i for i in [*liked_ids, *disliked_ids] if i not in records]
        return await self._serve(ctx, key, unknown)

    async def explain_search_hit(self, request: SearchHitExplanationRequest) -> Explanation:
        index = self._titles.index
        candidates = named_in_query(request.query, index)
        wanted = [request.tmdb_id, *(i for ids in candidates for i in ids)]
        records = await self._catalog.records(wanted)
        target = records.get(request.tmdb_id)
        if target is None:
            raise MovieNotFoundError(request.tmdb_id)
        named = _pick_named(candidates, records, exclude=request.tmdb_id)
        self._titles.add(r.movie for r in [target, *named])
        ctx = search_hit_context(request.query, target, named, self._titles.index)
        key = cache_key(
            {
                "kind": "search_hit",
                "query": " ".join(request.query.casefold().split()),
                "target": _hashed([target]),
                "named": _hashed(named),
                "versions": self._versions(),
            }
        )
        return await self._serve(ctx, key, [])

    async def _serve(self, ctx: ExplainContext, key: str, unknown: list[int]) -> Explanation:
        started = time.perf_counter()
        explanation, cached = await self._cache.get_or_generate(key, lambda: self._generate(ctx))
        EXPLANATIONS.labels(ctx.kind, explanation.generator, str(cached).lower()).inc()
        log.info(
            "explanation",
            kind=ctx.kind,
            target=ctx.target.tmdb_id,
            generator=explanation.generator,
            fallback_reason=explanation.fallback_reason,
            confidence=explanation.confidence,
            cached=cached,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return explanation.model_copy(update={"cached": cached, "unknown_ids": unknown})

    async def _generate(self, ctx: ExplainContext) -> tuple[Explanation, int]:
        index = self._titles.index
        reason: FallbackReason = "no_api_key"
        if self._writer is not None:
            written = await self._writer.write(ctx, index)
            if written.verdict is not None:
                explanation = _explanation(ctx, written.verdict, self._writer.model, None)
                return explanation, self._settings.cache_ttl_s
            reason = written.failure or "llm_error"
        verdict = validate(deterministic_draft(ctx), ctx, index)
        if not verdict.ok:
            # A template bug must not reach a user either: say only the target's name.
            log.error("deterministic_explanation_invalid", problems=verdict.problems)
            target = ctx.target.tmdb_id
            verdict = Verdict(f"We picked {ctx.label(target)} for you.", [target], [], [])
        ttl = (
            self._settings.cache_ttl_s
            if reason == "no_api_key"
            else self._settings.fallback_cache_ttl_s
        )
        return _explanation(ctx, verdict, "deterministic", reason), ttl


def _explanation(
    ctx: ExplainContext, verdict: Verdict, generator: str, reason: FallbackReason | None
) -> Explanation:
    return Explanation(
        target_id=ctx.target.tmdb_id,
        text=verdict.text,
        confidence=ctx.confidence,
        cited_ids=verdict.cited_ids,
        facts=verdict.facts,
        nearest_liked=ctx.nearest_liked(),
        generator=generator,
        fallback_reason=reason,
        cached=False,
    )


def _hashed(records: list[MovieRecord]) -> list[list[object]]:
    return [[r.tmdb_id, r.content_hash] for r in records]


def named_in_query(query: str, index: TitleIndex) -> list[frozenset[int]]:
    """Catalog titles a query names, as candidate id sets (remakes share a title).

    Users type in lower case, so case is ignored here, but only distinctive titles count, and a
    single word only when capitalised or introduced as a title ("like zodiac"): a query about
    "a shark" must not pull in a film called "Shark".
    """
    found: list[frozenset[int]] = []
    for occurrence in index.occurrences(query, ignore_case=True):
        entry = occurrence.entry
        if entry.strictness is not Strictness.NORMAL:
            continue
        before = re.findall(r"\w+", query[: occurrence.start].casefold())[-1:]
        if (
            len(entry.tokens) > 1
            or occurrence.span[:1].isupper()
            or (before and before[0] in NAMING_WORDS)
        ):
            found.append(entry.ids)
        if len(found) >= MAX_NAMED:
            break
    return found


def _pick_named(
    candidates: list[frozenset[int]], records: dict[int, MovieRecord], *, exclude: int
) -> list[MovieRecord]:
    named: list[MovieRecord] = []
    for ids in candidates:
        options = [records[i] for i in ids if i in records and i != exclude]
        if options:
            # Of several films with one title, the user most likely means the best known.
            named.append(max(options, key=lambda r: (r.movie.vote_count or 0, -r.tmdb_id)))
    return list({r.tmdb_id: r for r in named}.values())
