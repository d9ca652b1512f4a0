"""Evaluate "why this?" explanations over (target, taste) pairs from MovieLens users.

For each pair, a user's liked (4+ stars) and disliked (2- stars) movies are the taste and one
more movie they liked is the target. Every pair is explained by each generator through a real
explainer (real Redis, real Chroma, the real SDK against the fake Messages API), and every
served explanation is checked *independently* of the explainer's own validator:

- hallucinated title: a "(YYYY)" not right after the title of a context movie of that year, or
  a catalog title (from the catalog CSV, not from the explainer's index) written in the text
  that is neither a context movie's title nor words of the context's own data. Must be 0.
- fact citation: at least one fact in ``facts`` that is true in the catalog CSV (the target and
  the cited liked movie really share that director, actor, keyword or overview word, genre or
  decade) and that the text states.

Generators: ``deterministic`` (no API key), and ``claude-via-fake``: the real SDK against
tests/fakes/anthropic.py, answering like a model that is right most of the time and, on
purpose, hallucinates on about a third of first attempts (a catalog title outside the context,
a wrong year, an id outside the context, an invented film). Those must be caught, retried and,
failing that, replaced by the fallback: the served rate must still be 0.

The movies in the pairs are embedded with the real model by the real indexer. The rest of the
catalog is written in the same record layout with a placeholder vector: the explainer never
searches by vector (it reads records by id), but it builds its title index from every record,
and the check is only meaningful against the whole catalog. (Embedding all 15.8k films takes
about 13 minutes on the 2-core box this ran on; ``--embed-all`` does it anyway.)

    .venv/bin/python bench/eval_explanations.py [--pairs 120] [--seed 7] [--write-doc]

Skips (exit 0) when ../shared/data is absent. ``--write-doc`` rewrites the results section of
docs/explanations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import random
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

# The project's own code and test support (the real explainer, indexer and fake API).
import benchlib  # noqa: E402
import httpx  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from marquee_embedder.indexer import CatalogIndexer  # noqa: E402
from marquee_embedder.ledger import Ledger  # noqa: E402
from marquee_explainer.app import create_app  # noqa: E402
from marquee_explainer.settings import ExplainerSettings  # noqa: E402
from marquee_ingest.sources import read_catalog_csv  # noqa: E402
from marquee_shared.chroma import open_collection  # noqa: E402
from marquee_shared.events import Movie, MovieFetched  # noqa: E402
from marquee_shared.index import movie_document, movie_metadata, record_id  # noqa: E402
from marquee_shared.model.encoder import (  # noqa: E402
    DIMENSIONS,
    default_model_path,
    load_encoder,
)
from tests.fakes.anthropic import (  # noqa: E402
    FakeAnthropic,
    catalog_blocks,
    grounded_answer,
    tool_answer,
)
from tests.support.asgi import serve  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CATALOG_CSV = SHARED / "catalog" / "movies.csv"
MOVIELENS = SHARED / "movielens"
DOC = ROOT / "docs" / "explanations.md"
DOC_START, DOC_END = "<!-- eval:start -->", "<!-- eval:end -->"
PLACEHOLDER_FLAG = "eval_placeholder"

LIKED, DISLIKED = 4.0, 2.0
TASTE_LIKED, TASTE_DISLIKED = 15, 5
MIN_LIKED = 8
PAIRS_PER_USER = 2
CONCURRENCY = 8
HALLUCINATE_FIRST, HALLUCINATE_RETRY = 0.35, 0.3
STRENGTH_ORDER = ["director", "cast", "theme", "query", "genre", "decade"]


@dataclass(frozen=True)
class Pair:
    user: int
    target: int
    ratings: list[tuple[int, float]]

    @property
    def liked(self) -> list[int]:
        return [t for t, r in self.ratings if r >= LIKED]

    def request(self) -> dict[str, Any]:
        return {
            "target_id": self.target,
            "ratings": [{"tmdb_id": t, "rating": r} for t, r in self.ratings],
        }


# --- data ------------------------------------------------------------------------------------


def load_catalog() -> dict[int, Any]:
    return {m.tmdb_id: m for m in read_catalog_csv(CATALOG_CSV) if isinstance(m, Movie)}


def load_pairs(catalog: dict[int, Any], n: int, seed: int) -> list[Pair]:
    with (MOVIELENS / "links.csv").open(encoding="utf-8") as f:
        links = {r["movieId"]: int(r["tmdbId"]) for r in csv.DictReader(f) if r["tmdbId"]}
    by_user: dict[int, list[tuple[int, float]]] = collections.defaultdict(list)
    with (MOVIELENS / "ratings.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tmdb_id = links.get(row["movieId"])
            if tmdb_id in catalog:
                by_user[int(row["userId"])].append((tmdb_id, float(row["rating"])))
    rng = random.Random(seed)
    users = sorted(by_user)
    rng.shuffle(users)
    pairs: list[Pair] = []
    for user in users:
        ratings = dict(by_user[user])  # a re-rating keeps the last
        liked = sorted(t for t, r in ratings.items() if r >= LIKED)
        disliked = sorted(t for t, r in ratings.items() if r <= DISLIKED)
        if len(liked) < MIN_LIKED:
            continue
        for target in rng.sample(liked, PAIRS_PER_USER):
            others = [t for t in liked if t != target]
            taste = rng.sample(others, min(TASTE_LIKED, len(others)))
            taste += rng.sample(disliked, min(TASTE_DISLIKED, len(disliked)))
            pairs.append(Pair(user, target, [(t, ratings[t]) for t in taste]))
            if len(pairs) >= n:
                return pairs
    return pairs


# --- the index -------------------------------------------------------------------------------


async def build_index(
    chroma_url: str,
    redis_url: str,
    name: str,
    catalog: dict[int, Any],
    needed: set[int],
    *,
    embed_all: bool,
) -> None:
    _, collection = await open_collection(httpx.URL(chroma_url), name)  # type: ignore[arg-type]
    embed = set(catalog) if embed_all else needed
    stored = await collection.get(ids=[record_id(i) for i in embed], include=["metadatas"])
    placeholders = [
        i
        for i, md in zip(stored["ids"], stored["metadatas"] or [], strict=True)
        if md.get(PLACEHOLDER_FLAG)
    ]
    if placeholders:  # written by an earlier run that did not need them embedded
        await collection.delete(ids=placeholders)
    started = time.perf_counter()
    # The services' default runtime (ONNX; the same vectors as torch).
    encoder = load_encoder(default_model_path(), "onnx")
    redis = Redis.from_url(redis_url)
    try:
        indexer = CatalogIndexer(collection, encoder, Ledger(redis, f"eval:ledger:{name}"))
        now = datetime.now(UTC)
        todo = sorted(embed)
        for i in range(0, len(todo), 256):
            events = [
                MovieFetched(source="eval", movie=catalog[t], occurred_at=now)
                for t in todo[i : i + 256]
            ]
            await indexer.apply(events)
            print(f"\r  embedded {min(i + 256, len(todo))}/{len(todo)}", end="", flush=True)
    finally:
        await redis.aclose()
    print(f"  ({time.perf_counter() - started:.0f}s)")
    rest = sorted(set(catalog) - embed)
    have = set()
    for i in range(0, len(rest), 2000):
        got = await collection.get(ids=[record_id(t) for t in rest[i : i + 2000]], include=[])
        have.update(got["ids"])
    missing = [t for t in rest if record_id(t) not in have]
    vector = [1.0 / DIMENSIONS**0.5] * DIMENSIONS
    now = datetime.now(UTC)
    for i in range(0, len(missing), 1000):
        chunk = [catalog[t] for t in missing[i : i + 1000]]
        await collection.upsert(
            ids=[record_id(m.tmdb_id) for m in chunk],
            embeddings=[vector] * len(chunk),
            documents=[movie_document(m) for m in chunk],
            metadatas=[
                {**movie_metadata(m, occurred_at=now), PLACEHOLDER_FLAG: True} for m in chunk
            ],
        )
    print(f"  catalog records: {len(embed)} embedded, {len(rest)} with a placeholder vector")


# --- the scripted model ----------------------------------------------------------------------


class AdversarialModel:
    """Answers like the fake's grounded model, but hallucinates on purpose now and then."""

    def __init__(self, catalog: dict[int, Any], seed: int) -> None:
        self._rng = random.Random(seed)
        self._titles = [
            m for m in catalog.values() if len(m.title.split()) >= 2 and m.year is not None
        ]
        self.first_attempts = 0
        self.retries = 0
        self.injected_first = 0
        self.hallucinated = collections.Counter[str]()

    def __call__(self, body: dict[str, Any]) -> Any:
        texts = [b.get("text", "") for b in body["messages"][0]["content"]]
        retry = len(body["messages"]) > 1 or any("was rejected" in t for t in texts)
        chance = HALLUCINATE_RETRY if retry else HALLUCINATE_FIRST
        if retry:
            self.retries += 1
        else:
            self.first_attempts += 1
        good = grounded_answer(body)
        if self._rng.random() >= chance:
            return good
        blocks = catalog_blocks(body)
        context = {
            m["id"]: m for kind in ("taste", "target", "related") for m in blocks.get(kind, [])
        }
        target = blocks["target"][0]["id"]
        text = good.body["content"][0]["input"]["text"]  # type: ignore[index]
        kind = self._rng.choice(["catalog_title", "wrong_year", "outside_id", "invented"])
        self.hallucinated[kind] += 1
        self.injected_first += not retry
        if kind == "catalog_title":
            outsider = self._rng.choice(
                [m for m in self._titles if m.tmdb_id not in context][:5000]
            )
            text = f"If you enjoyed {outsider.title}, you will like this. {text}"
        elif kind == "wrong_year":
            other = context[target]
            text = f"{text} {other['title']} ({other.get('year', 1999) + 3}) is a must."
        elif kind == "outside_id":
            outsider = self._rng.choice(self._titles)
            text = f"{text} Much like [[{outsider.tmdb_id}]]."
        else:
            text = f"Fans of The Midnight Harbor (1987) agree: {text}"
        return tool_answer(text, [target], good.body["content"][0]["input"]["fact_ids"])  # type: ignore[index]


# --- independent checks ----------------------------------------------------------------------

# A run of capitalised words, with the small words titles keep in lower case in between.
TITLE_WORD = r"[A-Z0-9][\w'\u2019.:&-]*"
CAPITAL_RUN = re.compile(rf"{TITLE_WORD}(?:\s+(?:of|the|and|in|a|an|to|on|for|{TITLE_WORD}))*")


@dataclass
class Checker:
    catalog: dict[int, Any]
    by_title: dict[str, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for movie in self.catalog.values():
            self.by_title.setdefault(movie.title, set()).add(movie.tmdb_id)

    def hallucinations(self, text: str, context: set[int]) -> list[str]:
        movies = [self.catalog[i] for i in context]
        found = []
        for match in re.finditer(r"\((\d{4})\)", text):
            before = text[: match.start()].rstrip()
            year = int(match.group(1))
            if not any(m.year == year and before.endswith(m.title) for m in movies):
                found.append(f"{before[-40:]} ({year})")
        strings = "\n".join(
            s
            for m in movies
            for s in [
                m.title,
                m.overview,
                m.tagline or "",
                *m.directors,
                *m.cast,
                *m.keywords,
                *m.genres,
            ]
        )
        titles = {m.title for m in movies}
        for run in CAPITAL_RUN.finditer(text):
            words = run.group().split()
            for a in range(len(words)):
                for b in range(a + 1, len(words) + 1):
                    span = " ".join(words[a:b]).rstrip(".,:;!?")
                    if span not in self.by_title or span in titles:
                        continue
                    if span.isdigit():
                        continue  # "1982" in "(1982)": years are checked above, with titles
                    sentence_start = a == 0 and _sentence_start(text, run.start())
                    if b - a == 1 and (sentence_start or len(span) <= 3):
                        continue  # "It is ...", "Up": no title signal
                    if re.search(rf"(?<!\w){re.escape(span)}(?!\w)", strings):
                        continue  # the context's own words (a name, a place, a phrase)
                    found.append(span)
        return found

    def real_facts(
        self, facts: list[dict[str, Any]], text: str, target: int, context: set[int]
    ) -> list[dict[str, Any]]:
        t = self.catalog[target]
        real = []
        for fact in facts:
            others = [self.catalog[i] for i in fact["movie_ids"] if i in context and i != target]
            if not others or not _stated(fact, text):
                continue
            if all(_shares(t, o, fact) for o in others):
                real.append(fact)
        return real


def self_check(checker: Checker) -> None:
    """A check that can find nothing proves nothing: it must flag planted hallucinations."""
    jaws, rises = checker.catalog.get(578), checker.catalog.get(49026)
    if jaws is None or rises is None:
        return
    context = {jaws.tmdb_id}
    good = f"Because you liked {jaws.title} ({jaws.year}), here is a film by Steven Spielberg."
    planted = [
        f"If you enjoyed {rises.title}, you will like this.",
        f"{jaws.title} ({jaws.year + 1}) is great.",
        "Fans of The Midnight Harbor (1987) agree.",
    ]
    assert not checker.hallucinations(good, context), checker.hallucinations(good, context)
    for text in planted:
        assert checker.hallucinations(text, context), f"the checker missed: {text}"


def _sentence_start(text: str, i: int) -> bool:
    head = text[:i].rstrip(" \"'“”*(")
    return not head or head[-1] in ".!?:;\n"


def _decade(year: int | None) -> str | None:
    return None if year is None else f"{year // 10 * 10}s"


def _words(movie: Any) -> set[str]:
    return {
        w.lower().rstrip("s") for w in re.findall(r"\w+", f"{movie.overview} {movie.tagline or ''}")
    }


def _shares(a: Any, b: Any, fact: dict[str, Any]) -> bool:
    value, kind = fact["value"], fact["kind"]
    if kind == "director":
        return value in a.directors and value in b.directors
    if kind == "cast":
        return value in a.cast and value in b.cast
    if kind == "genre":
        return value in a.genres and value in b.genres
    if kind == "decade":
        return _decade(a.year) == value == _decade(b.year)
    if kind == "theme":
        kw = value.lower()
        in_keywords = kw in {k.lower() for k in a.keywords} and kw in {
            k.lower() for k in b.keywords
        }
        stem = kw.rstrip("s")
        return in_keywords or (stem in _words(a) and stem in _words(b))
    return False


def _stated(fact: dict[str, Any], text: str) -> bool:
    lower = text.lower()
    value = fact["value"].lower()
    if fact["kind"] in {"director", "cast"}:
        return value.split()[-1] in lower
    if fact["kind"] == "genre":
        aliases = {"science fiction": "sci-fi", "animation": "animated", "tv movie": "tv"}
        return value in lower or aliases.get(value, "\0") in lower
    said = {w.rstrip("s") for w in re.findall(r"\w+", lower)}
    return all(w.rstrip("s") in said for w in re.findall(r"\w+", value) if w not in {"a", "or"})


# --- running ---------------------------------------------------------------------------------


@dataclass
class Result:
    generator: str
    pairs: int = 0
    hallucinated: list[tuple[int, str, list[str]]] = field(default_factory=list)
    cited_fact: int = 0
    by_generator: collections.Counter[str] = field(default_factory=collections.Counter)
    fallbacks: collections.Counter[str] = field(default_factory=collections.Counter)
    confidence: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    injected_first: int = 0
    strongest: collections.Counter[str] = field(default_factory=collections.Counter)


async def run_generator(
    name: str, url: str, pairs: list[Pair], checker: Checker, catalog: dict[int, Any]
) -> Result:
    result = Result(name)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async with httpx.AsyncClient(timeout=60) as client:

        async def one(pair: Pair) -> None:
            async with semaphore:
                started = time.perf_counter()
                r = await client.post(url + "/explanations", json=pair.request())
                result.latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            body = r.json()
            context = {pair.target, *(t for t in pair.liked if t in catalog)}
            result.pairs += 1
            bad = checker.hallucinations(body["text"], context)
            if bad or not set(body["cited_ids"]) <= context:
                result.hallucinated.append((pair.target, body["text"], bad))
            real = checker.real_facts(body["facts"], body["text"], pair.target, context)
            if real:
                result.cited_fact += 1
                kinds = [f["kind"] for f in real]
                result.strongest[min(kinds, key=STRENGTH_ORDER.index)] += 1
            result.by_generator[body["generator"]] += 1
            result.fallbacks[body["fallback_reason"] or "none"] += 1
            result.confidence[body["confidence"]] += 1
            result.lengths.append(len(body["text"].split()))
            if len(result.examples) < 3:
                result.examples.append({"target": catalog[pair.target].title, **body})

        await asyncio.gather(*(one(p) for p in pairs))
    return result


@contextlib.asynccontextmanager
async def servers(data_dir: Path) -> AsyncIterator[tuple[str, str]]:
    """A throwaway redis-server and a Chroma server on the cached data dir; always stopped."""
    with benchlib.stores(data_dir) as urls:
        yield urls


async def main(args: argparse.Namespace) -> int:
    if not CATALOG_CSV.exists() or not MOVIELENS.exists():
        print(f"skipped: {SHARED} is absent (the ../shared kit is not beside the project)")
        return 0
    catalog = load_catalog()
    pairs = load_pairs(catalog, args.pairs, args.seed)
    needed = {i for p in pairs for i in [p.target, *(t for t, _ in p.ratings)]}
    print(f"{len(pairs)} pairs from {len({p.user for p in pairs})} users; {len(needed)} movies")
    checker = Checker(catalog)
    self_check(checker)
    results: list[Result] = []
    async with servers(args.data_dir) as (redis_url, chroma_url):
        name = f"eval_s{args.seed}_n{args.pairs}{'_all' if args.embed_all else ''}"
        await build_index(chroma_url, redis_url, name, catalog, needed, embed_all=args.embed_all)
        common = {
            "redis_url": redis_url,
            "chroma_url": chroma_url,
            "chroma_collection": name,
            "log_level": "WARNING",
            "log_format": "json",
        }
        # Deterministic first, then Claude-via-fake, each on a flushed cache.
        settings = ExplainerSettings(**common, anthropic_api_key=None)
        async with serve(create_app(settings)) as url:
            results.append(await run_generator("deterministic", url, pairs, checker, catalog))
        async with Redis.from_url(redis_url) as r:
            await r.flushdb()
        with FakeAnthropic() as fake:
            model = AdversarialModel(catalog, args.seed)
            fake.responder = model
            settings = ExplainerSettings(
                **common, anthropic_api_key=fake.api_key, anthropic_base_url=fake.url, max_retries=0
            )
            async with serve(create_app(settings)) as url:
                result = await run_generator("claude-via-fake", url, pairs, checker, catalog)
            result.llm_calls = fake.calls
            result.injected = dict(model.hallucinated)
            result.retries, result.injected_first = model.retries, model.injected_first
            results.append(result)
    report = render(results, args)
    print(report)
    for r in results:
        for target, text, bad in r.hallucinated[:5]:
            print(f"HALLUCINATION [{r.generator}] target {target}: {bad} in {text!r}")
    if args.write_doc:
        write_doc(report)
    return 1 if any(r.hallucinated for r in results) else 0


HEADER = (
    "| generator | pairs | hallucinated-title rate | fact-citation rate | served by | fallbacks "
    "| confidence (h/m/l) | words (median) | latency p50 / p95 |"
)


def render(results: Iterable[Result], args: argparse.Namespace) -> str:
    command = f".venv/bin/python bench/eval_explanations.py --pairs {args.pairs} --seed {args.seed}"
    lines = [f"Reproduce: `{command}`", "", HEADER, "|" + " --- |" * 9]
    notes: list[str] = []
    examples: list[str] = []
    for r in results:
        n = max(1, r.pairs)
        lat = sorted(r.latencies) or [0.0]
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        served = ", ".join(f"{k} {v}" for k, v in r.by_generator.most_common())
        fallbacks = ", ".join(f"{k} {v}" for k, v in sorted(r.fallbacks.items()) if k != "none")
        bad = len(r.hallucinated)
        cells = [
            r.generator,
            str(r.pairs),
            f"{bad}/{r.pairs} = {bad / n:.1%}",
            f"{r.cited_fact}/{r.pairs} = {r.cited_fact / n:.1%}",
            served,
            fallbacks or "none",
            f"{r.confidence['high']}/{r.confidence['medium']}/{r.confidence['low']}",
            f"{statistics.median(r.lengths) if r.lengths else 0:g}",
            f"{statistics.median(lat) * 1000:.0f} / {p95 * 1000:.0f} ms",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        strongest = ", ".join(f"{k} {r.strongest[k]}" for k in STRENGTH_ORDER if r.strongest[k])
        notes.append(f"{r.generator}: strongest true fact stated, per explanation: {strongest}.")
        if r.injected:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.injected.items()))
            notes.append(
                f"{r.generator}: {r.llm_calls} Messages API calls for {r.pairs} pairs; "
                f"hallucinations injected on purpose: {sum(r.injected.values())} ({kinds}), "
                f"{r.injected_first} of them in first answers; first answers sent back: "
                f"{r.retries} (so {r.retries - r.injected_first} grounded answers were rejected); "
                f"served with a hallucinated title: {bad}."
            )
        examples.extend(
            f"- *{r.generator}*, target {ex['target']} ({ex['confidence']}): {ex['text']}"
            for ex in r.examples[:2]
        )
    return "\n".join([*lines, "", *(f"- {n}" for n in notes), "", "Examples:", "", *examples])


def write_doc(report: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(DOC_START) + len(DOC_START), text.index(DOC_END)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    DOC.write_text(f"{text[:start]}\n_Run {stamp}._\n\n{report}\n{text[end:]}", encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "eval-explanations")
    parser.add_argument("--embed-all", action="store_true", help="embed the whole catalog")
    parser.add_argument("--write-doc", action="store_true", help="update docs/explanations.md")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
