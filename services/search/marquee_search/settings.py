"""Search settings, read once at startup (env prefix ``MARQUEE_SEARCH_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_search.ranker import DEFAULT_MODEL as DEFAULT_RANKER_MODEL
from marquee_shared.api import MAX_QUERY_CHARS, QUERY_CHARS_CEILING
from marquee_shared.model.encoder import Backend
from marquee_shared.model.resolve import STOCK
from marquee_shared.settings import CommonSettings

DEFAULT_HEDGES = (
    "i think",
    "i believe",
    "maybe",
    "might be",
    "not sure",
    "can't remember",
    "cannot remember",
    "don't remember",
    "can't recall",
    "i forget",
    "or something",
    "something like",
)


class SearchSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_SEARCH_", extra="ignore", validate_by_name=True
    )

    model: str = Field(
        default=STOCK,
        min_length=1,
        description="The query encoder's model: stock (all-MiniLM-L6-v2, packaged), "
        "movie-tuned (the packaged fine-tuned bundle, in builds that have it) or the path to a "
        "sentence-transformers folder or a Marquee model bundle. Must be the model the "
        "collection was built with: another one stops startup.",
    )
    model_path: Path | None = Field(
        default=None,
        description="Deprecated: use MODEL (a path works there). When set, overrides MODEL.",
    )
    backend: Backend = Field(
        default="onnx-int8",
        description="Model runtime: onnx-int8 (the default: the fastest whose quality holds, about "
        "2x fp32's throughput on AVX-512 VNNI, cosine 0.99 to fp32, tomt_dev recall@10 within "
        "half a point; docs/performance.md), onnx (fp32, the same vectors as torch) or torch "
        "(needs the torch extra: pip install 'marquee-search[torch]'). "
        "Keep it the same as the embedders', so queries and documents are embedded alike.",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where exported ONNX files are kept (default ~/.cache/marquee/onnx).",
    )
    torch_threads: PositiveInt | None = Field(
        default=1,
        description="Intra-op threads per query encoding (default 1: a short query splits "
        "badly across threads, 2.6 ms on one against 3.4 ms on two here, and one thread "
        "leaves the other cores to the requests around it; docs/performance.md).",
    )
    encode_passes: PositiveInt = Field(
        default=2,
        description="Query-encoding passes run at once, each on TORCH_THREADS threads; queries "
        "that arrive meanwhile wait and share the next pass. About the replica's cores divided "
        "by TORCH_THREADS.",
    )
    query_cache_size: int = Field(
        default=4096, ge=0, description="Query vectors kept in memory (LRU); 0 disables."
    )
    ranker_model: Path | None = Field(
        default=DEFAULT_RANKER_MODEL,
        description="The learned ranker (LightGBM LambdaMART text file) that re-orders the "
        "fused candidates of descriptions; the shipped one by default (made by make "
        "train-ranker, card beside it). Empty: hybrid keeps the fusion's order.",
    )

    @field_validator("ranker_model", mode="before")
    @classmethod
    def _ranker_off(cls, value: object) -> object:
        # MARQUEE_SEARCH_RANKER_MODEL= (empty) or "none" turns the learned ranker off.
        if isinstance(value, str) and value.strip().lower() in {"", "none", "off"}:
            return None
        return value

    ranker_min_words: PositiveInt = Field(
        default=8,
        description="Requests of at least this many words are re-ordered by the ranker; "
        "shorter ones (titles, names, keywords) keep the fusion's order.",
    )
    window_tokens: int = Field(
        default=128,
        ge=16,
        le=256,
        description="A request longer than this many word pieces is encoded as several "
        "windows of whole sentences (plus the request whole), in one batch, and a movie's "
        "dense score mixes its best and mean window cosines (docs/evaluation.md).",
    )
    similar_min_votes: int | None = Field(
        default=20,
        ge=0,
        description="Similar movies: leave out movies with fewer TMDB votes than this (unknown "
        "counts pass), unless the request sets min_votes or min_rating itself.",
    )
    similar_min_rating: float | None = Field(
        default=5.0,
        ge=0,
        le=10,
        description="Similar movies: leave out movies rated below this (unknown ratings pass), "
        "unless the request sets min_votes or min_rating itself.",
    )
    exact_max_movies: int = Field(
        default=100_000,
        ge=0,
        description="Up to this many movies, each replica mirrors the vectors too (1.5 KiB a "
        "movie) and answers dense queries exactly in memory, filters as a mask, instead of "
        "asking Chroma; larger catalogs query Chroma's HNSW index. 0 always asks Chroma.",
    )
    max_in_flight: int = Field(
        default=256,
        ge=0,
        description="Requests one replica answers at once; beyond, it answers 503 with "
        "Retry-After at once instead of queueing past the callers' timeouts. 0: no limit.",
    )
    index_changes_stream: str = Field(
        default="marquee:index:v1:changes",
        description="The embedders' changelog of Chroma writes, tailed by every replica (plain "
        "XREAD, no group) to keep its keyword index in step.",
    )
    alias_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the replica reads the index alias; when a model migration's "
        "switch (or rollback) moves it, the replica loads the new collection and its model in "
        "the background and then serves from it (docs/operations.md).",
    )
    keyword_startup_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long startup waits for the keyword index to load from Chroma before "
        "serving anyway (hybrid answers as semantic, keyword mode with 503, until it has).",
    )
    # -- Claude re-ranking of complex requests (marquee_search.llm_rerank) -----------------------
    # The plain ANTHROPIC_* names are the ones the SDK and Anthropic's docs use (the explainer
    # takes them too); the MARQUEE_SEARCH_ ones win, so search can use another key or none.
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_SEARCH_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="With a key (and LLM_RERANK on), long or hedged hybrid searches are "
        "re-ranked by Claude; without one nothing changes.",
    )
    anthropic_base_url: AnyHttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_SEARCH_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        description="Messages API base URL (a proxy, or a fake server in tests).",
    )
    llm_rerank: bool = Field(
        default=True,
        description="Re-rank long or hedged hybrid searches with Claude when a key is set; "
        "false keeps the learned ranking even with a key (e.g. the explainer's).",
    )
    llm_rerank_model: str = Field(
        default="claude-haiku-4-5",
        min_length=1,
        description="Claude model; part of the cache key, so a change never serves old orders.",
    )
    llm_rerank_candidates: int = Field(
        default=25,
        ge=2,
        le=50,
        description="Top hits of the learned ranking sent to Claude (id, title, year, overview "
        "cut to 300 characters); Claude can only reorder what it sees.",
    )
    llm_rerank_min_chars: int = Field(
        default=200,
        ge=1,
        description="A request at least this long is re-ranked (long descriptions are where "
        "the embedding and BM25 miss most; short ones are mostly titles).",
    )
    llm_rerank_hedges: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_HEDGES),
        description="Comma-separated phrases that mark a request as hedged, so it is re-ranked "
        "whatever its length (whole words, any case, curly or straight apostrophes). Empty: "
        "length only.",
    )
    llm_rerank_deadline_s: PositiveFloat = Field(
        default=4.0,
        le=30,
        description="Budget for one re-ranking, cache read, retries and all; past it the "
        "search answers with the learned ranking.",
    )
    llm_rerank_max_retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="SDK retries on 429/5xx/connection errors, within the deadline.",
    )
    llm_rerank_cache_ttl_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="How long Claude's order for one request and candidate list is reused "
        "from Redis. 0: not cached.",
    )
    llm_rerank_titles: bool = Field(
        default=False,
        description="Name, then verify: Claude may also name titles it believes match; those "
        "found in this replica's catalog by title (and year) join the results after the "
        "candidates it ranked. Titles not in the catalog are never shown.",
    )
    llm_rerank_title_min_similarity: float = Field(
        default=90.0,
        ge=50,
        le=100,
        description="How close (0-100, whole-title fuzzy ratio) a catalog title must be to a "
        "title Claude names for it to count as that movie.",
    )

    @field_validator("llm_rerank_hedges", mode="before")
    @classmethod
    def _split_hedges(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    max_query_chars: PositiveInt = Field(
        default=MAX_QUERY_CHARS,
        le=QUERY_CHARS_CEILING,
        description="Longest q of /search in characters; longer ones get a 422 saying so. Keep "
        "it at least the gateway's MAX_QUERY_CHARS, or the gateway's longest queries come back "
        "refused.",
    )
