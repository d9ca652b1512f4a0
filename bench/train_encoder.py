"""Fine-tune all-MiniLM-L6-v2 into Marquee's movie-tuned encoder (issue 14).

    .venv/bin/python bench/train_encoder.py [--split movie|random|tune] [--ship]
    make train-encoder                                     # the shipped recipe

Recipe (contrastive, in-batch negatives, one pass):

1. *Real requests*: every tomt_dev request on the training side of the split, paired with its
   answer's movie text (exactly what the embedder indexes: ``movie_document``) and one hard
   negative mined with today's hybrid search (the stock model's fused candidates, ranks 3-30,
   never the answer): the film the old ranking confused it with.
2. *Catalog pairs* (self-supervised, from ../shared's catalog only): a movie's tagline and
   keywords, or one overview sentence, as the query for the rest of its text; its title as the
   query for its text; its director and cast as the query for its text. These keep the
   model's grip on how titles and names match (training on requests alone halved recall on
   title and name queries in an earlier check).

The loss is MultipleNegativesRanking (softmax over the batch's documents, scale 20); a
document of the same movie as the anchor never counts as a negative. Batches hold one kind
of pair; the kinds are interleaved by a seeded shuffle. Seeded end to end (data order, hard
negative choice, torch), two threads: the same inputs give the same weights.

Splits (``--split``): ``movie`` (default) trains on requests for a fixed 80 % of the answer
films (by a hash of the TMDB id) and holds out every request for the other 20 %, so the
held-out figure is about describing films the model never saw described; ``random`` holds out
20 % of the requests by a hash of the request id (answers may overlap: the optimistic figure);
``tune`` trains on eval_search.py's tune split only (the ~25 % the ranker learns from) and holds
out its report split, so that stock and tuned can be compared on issue 13's figures without
either the encoder or the ranker having seen a reported request. The catalog pairs never use
a held-out answer, a well-known-films answer (bench/data/wellknown.jsonl) or a film of the
title/name lookup set (ranking.lookup_queries).

Outputs under .data/encoder/<split>-<recipe hash>/: the fp32 model (not committed), the loss
curve, and with export the int8 ONNX bundle; ``--ship`` copies the bundle into
shared/marquee_shared/model/bundles/movie-tuned/. bench/eval_encoder.py measures the gates.
Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_search as ev
import ranking

OUT = ev.ROOT / ".data" / "encoder"
BUNDLE = ev.ROOT / "shared" / "marquee_shared" / "model" / "bundles" / "movie-tuned"
NAME = "marquee-minilm-movies"
VERSION = "1"
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class Recipe:
    seed: int = 11
    batch_size: int = 32
    max_tokens: int = 256
    lr: float = 3e-5
    warmup_share: float = 0.1
    scale: float = 20.0
    epochs: int = 1
    # Catalog pairs per kind (keywords+tagline, sentence, title, names).
    catalog_pairs: int = 600
    hard_negatives: bool = True
    negative_ranks: tuple[int, int] = (3, 30)
    threads: int = 2

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]


def _bucket(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


SPLITS = ("movie", "random", "tune")
"""movie: 20 % of the answer films held out (the recipe is chosen here); random: 20 % of the
requests; tune: eval_search.py's report split held out, so the encoder learns from the same
tune requests as the ranker and the report split stays unseen by both (issue 13's figures)."""


def held_out(q: ev.Query, split: str) -> bool:
    """Fixed by a hash, so every run trains and measures on the same requests."""
    if split == "tune":
        return q.split == "report"
    key = f"movie:{q.answer}" if split == "movie" else f"request:{q.qid}"
    return _bucket(key) < HELD_OUT_SHARE


@dataclass(frozen=True)
class Pair:
    kind: str
    anchor: str
    positive: str
    movie: int
    negative: str | None = None
    negative_movie: int | None = None


def _sentences(text: str) -> list[str]:
    import re

    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]


def catalog_pairs(
    catalog: dict[int, Any], exclude: set[int], per_kind: int, rng: random.Random
) -> list[Pair]:
    from marquee_shared.index import movie_document

    films = sorted(
        (m for m in catalog.values() if m.tmdb_id not in exclude and m.overview),
        key=lambda m: m.tmdb_id,
    )
    out: list[Pair] = []
    # Tagline and keywords: the short, abstract side of a film.
    pool = [m for m in films if len(m.keywords) >= 3]
    for m in rng.sample(pool, min(per_kind, len(pool))):
        words = rng.sample(m.keywords, min(len(m.keywords), 5))
        anchor = ", ".join(words)
        if m.tagline:
            anchor = f"{m.tagline} {anchor}"
        rest = m.model_copy(update={"tagline": None, "keywords": []})
        out.append(Pair("keywords", anchor, movie_document(rest), m.tmdb_id))
    # One overview sentence for the rest of the film: a plot detail recalled on its own.
    pool = [m for m in films if len(_sentences(m.overview)) >= 2]
    for m in rng.sample(pool, min(per_kind, len(pool))):
        sentences = _sentences(m.overview)
        pick = rng.randrange(len(sentences))
        rest = " ".join(s for i, s in enumerate(sentences) if i != pick)
        doc = movie_document(m.model_copy(update={"overview": rest}))
        out.append(Pair("sentence", sentences[pick], doc, m.tmdb_id))
    # Titles as typed, and names, keep lookups working on the dense side.
    out.extend(
        Pair("title", m.title.lower(), movie_document(m), m.tmdb_id)
        for m in rng.sample(films, min(per_kind, len(films)))
    )
    pool = [m for m in films if m.directors or m.cast]
    for m in rng.sample(pool, min(per_kind, len(pool))):
        names = [*m.directors[:1], *m.cast[:2]]
        genre = f" {rng.choice(m.genres).lower()}" if m.genres else ""
        out.append(Pair("names", " ".join(names) + genre, movie_document(m), m.tmdb_id))
    return out


async def mine_negatives(
    catalog: dict[int, Any], queries: list[ev.Query], recipe: Recipe
) -> dict[str, list[int]]:
    """Each request's fused candidates from today's hybrid search (stock model), cached."""
    OUT.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\x00".join(sorted(q.qid for q in queries)).encode()).hexdigest()
    path = OUT / f"mined-{ev.file_hash(ev.CATALOG_CSV)}-{digest[:10]}.json"
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    from marquee_shared.api import MovieFilters

    none = MovieFilters()
    depth = recipe.negative_ranks[1]
    out: dict[str, list[int]] = {}
    async with ranking.engine_for(catalog) as (engine, box):
        await ranking.encode_windows(engine, queries, box)
        started = time.perf_counter()
        for i, q in enumerate(queries):
            found = await engine.candidates(q.text, none, depth)
            out[q.qid] = [t for t, _ in found.fused][:depth]
            if i % 250 == 0:
                print(f"\r  mined {i}/{len(queries)}", end="", flush=True)
        print(f"\r  mined {len(queries)} requests in {time.perf_counter() - started:.0f}s")
    path.write_text(json.dumps(out))
    return out


def request_pairs(
    catalog: dict[int, Any],
    queries: list[ev.Query],
    mined: dict[str, list[int]],
    recipe: Recipe,
    rng: random.Random,
) -> list[Pair]:
    from marquee_shared.index import movie_document

    lo, hi = recipe.negative_ranks
    out = []
    for q in queries:
        negative = negative_movie = None
        if recipe.hard_negatives:
            pool = [t for t in mined.get(q.qid, [])[lo:hi] if t != q.answer and t in catalog]
            if pool:
                negative_movie = rng.choice(pool)
                negative = movie_document(catalog[negative_movie])
        out.append(
            Pair(
                "request",
                q.text,
                movie_document(catalog[q.answer]),
                q.answer,
                negative,
                negative_movie,
            )
        )
    return out


def batches(pairs: list[Pair], recipe: Recipe, rng: random.Random) -> list[list[Pair]]:
    """Batches of one kind, no movie twice in a batch (its second request would be a false
    negative), interleaved by a seeded shuffle."""
    out: list[list[Pair]] = []
    for kind in sorted({p.kind for p in pairs}):
        todo = [p for p in pairs if p.kind == kind]
        rng.shuffle(todo)
        while todo:
            batch: list[Pair] = []
            seen: set[int] = set()
            rest = []
            for p in todo:
                if len(batch) < recipe.batch_size and p.movie not in seen:
                    batch.append(p)
                    seen.add(p.movie)
                else:
                    rest.append(p)
            out.append(batch)
            todo = rest
    rng.shuffle(out)
    return out


def train(base: Path, pairs: list[Pair], recipe: Recipe, out_dir: Path) -> list[float]:
    import numpy as np
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from torch.nn import functional

    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    rng = random.Random(recipe.seed)
    model = SentenceTransformer(str(base), device="cpu")
    model.max_seq_length = recipe.max_tokens
    model.train()
    plan = [b for _ in range(recipe.epochs) for b in batches(pairs, recipe, rng)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    warmup = max(1, int(len(plan) * recipe.warmup_share))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.0, (len(plan) - s) / (len(plan) - warmup))),
    )

    def embed(texts: list[str]) -> torch.Tensor:
        features = model.preprocess(texts)
        return functional.normalize(model(features)["sentence_embedding"], dim=-1)

    losses: list[float] = []
    started = time.perf_counter()
    for step, batch in enumerate(plan):
        anchors = embed([p.anchor for p in batch])
        docs = [p.positive for p in batch]
        movies = [p.movie for p in batch]
        for p in batch:
            if p.negative is not None and p.negative_movie is not None:
                docs.append(p.negative)
                movies.append(p.negative_movie)
        scores = anchors @ embed(docs).T * recipe.scale
        # A document of the anchor's own movie (other than its positive) is not a negative.
        own = torch.tensor([[m == p.movie for m in movies] for p in batch])
        own[torch.arange(len(batch)), torch.arange(len(batch))] = False
        scores = scores.masked_fill(own, float("-inf"))
        loss = functional.cross_entropy(scores, torch.arange(len(batch)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 5 == 0 or step == len(plan) - 1:
            elapsed = time.perf_counter() - started
            recent = float(np.mean(losses[-20:]))
            print(
                f"\r  step {step + 1}/{len(plan)} loss {recent:.3f} ({elapsed / 60:.1f} min)",
                end="",
                flush=True,
            )
    print()
    model.eval()
    model.save(str(out_dir / "model"))
    return losses


def stock_model_path() -> Path:
    from marquee_shared.model.encoder import default_model_path

    return default_model_path()


def held_out_exclusions(catalog: dict[int, Any], queries: list[ev.Query], split: str) -> set[int]:
    exclude = {q.answer for q in queries if held_out(q, split)}
    exclude |= {q.answer for q in ranking.load_wellknown()}
    for group in ranking.lookup_queries(catalog).values():
        exclude |= {q.answer for q in group}
    return exclude


async def main(args: argparse.Namespace) -> int:
    if not ev.CATALOG_CSV.exists() or not ev.TOMT.exists():
        print("../shared/data is absent: nothing to train on (skipped)")
        return 0
    recipe = Recipe(
        epochs=args.epochs,
        hard_negatives=not args.no_hard_negatives,
        catalog_pairs=args.catalog_pairs,
        max_tokens=args.max_tokens,
    )
    started = time.perf_counter()
    catalog = ev.load_catalog()
    queries = ev.load_queries()
    train_queries = [q for q in queries if not held_out(q, args.split)]
    print(
        f"split {args.split}: {len(train_queries)} training requests, "
        f"{len(queries) - len(train_queries)} held out; recipe {recipe.digest()}"
    )
    rng = random.Random(recipe.seed)
    mined = await mine_negatives(catalog, train_queries, recipe) if recipe.hard_negatives else {}
    mined_s = time.perf_counter() - started
    pairs = request_pairs(catalog, train_queries, mined, recipe, rng)
    if recipe.catalog_pairs:
        exclude = held_out_exclusions(catalog, queries, args.split)
        pairs += catalog_pairs(catalog, exclude, recipe.catalog_pairs, rng)
    out_dir = OUT / f"{args.split}-{recipe.digest()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"  {len(pairs)} pairs -> {out_dir}")
    summary_file = out_dir / "training.json"
    if summary_file.exists() and (out_dir / "model").is_dir():
        print("  trained before with this recipe and split (cached)")
    else:
        losses = train(stock_model_path(), pairs, recipe, out_dir)
        trained_s = time.perf_counter() - started
        summary = {
            "split": args.split,
            "recipe": asdict(recipe),
            "requests": len(train_queries),
            "pairs": {k: sum(p.kind == k for p in pairs) for k in sorted({p.kind for p in pairs})},
            "steps": len(losses),
            "losses": losses,
            "minutes": {"mining": mined_s / 60, "mining_and_training": trained_s / 60},
        }
        summary_file.write_text(json.dumps(summary, indent=1))
        print(f"  trained in {trained_s / 60:.1f} min (mining {mined_s / 60:.1f})")
    bundle = export(out_dir)
    if args.ship:
        if args.split != "movie":
            raise SystemExit("--ship: only the recipe chosen on the movie split ships")
        import eval_encoder

        await eval_encoder.main(
            eval_encoder.parse_args(["--model", str(bundle), "--split", args.split, "--write"])
        )
        ship(out_dir, ev.RESULTS / f"encoder-{args.split}.json")
    return 0


def export(out_dir: Path) -> Path:
    """The int8 ONNX bundle that serves (bundle.py), from the fp32 model."""
    from marquee_shared.model.bundle import export_bundle

    target = out_dir / "bundle"
    if not (target / "marquee_model.json").exists():
        exported = export_bundle(out_dir / "model", target, name=NAME, version=VERSION)
        print(f"  exported {exported} -> {target}")
    return target


def loss_curve(losses: list[float], points: int = 10) -> list[tuple[int, float]]:
    """Mean loss over each tenth of the steps."""
    size = max(1, len(losses) // points)
    return [
        (min(i + size, len(losses)), sum(losses[i : i + size]) / len(losses[i : i + size]))
        for i in range(0, len(losses), size)
    ]


def ship(out_dir: Path, results: Path) -> None:
    """Copy the bundle into the package (shared/marquee_shared/model/bundles/movie-tuned) with
    its card: data, recipe, steps, loss curve, size, checksum and every gate."""
    import shutil

    from marquee_shared.model.identity import model_id

    summary = json.loads((out_dir / "training.json").read_text())
    measured = json.loads(results.read_text())
    if BUNDLE.exists():
        shutil.rmtree(BUNDLE)
    shutil.copytree(out_dir / "bundle", BUNDLE)
    shipped = model_id(BUNDLE)
    manifest = json.loads((BUNDLE / "marquee_model.json").read_text())
    size = sum(p.stat().st_size for p in BUNDLE.iterdir()) / 1e6
    recipe = summary["recipe"]
    curve = "\n".join(f"| {step} | {loss:.3f} |" for step, loss in loss_curve(summary["losses"]))
    gates = "\n".join(
        f"| {name} | {g['value']:.4f} | {g['needs']} | {'yes' if g['passed'] else '**no**'} |"
        for name, g in measured["gates"].items()
    )
    pairs = ", ".join(f"{k} {v}" for k, v in summary["pairs"].items())
    card = CARD.format(
        id=shipped,
        split=summary["split"],
        requests=summary["requests"],
        pairs=pairs,
        steps=summary["steps"],
        minutes=summary["minutes"]["mining_and_training"],
        recipe=", ".join(f"{k} {v}" for k, v in recipe.items()),
        curve=curve,
        gates=gates,
        passed="all passed"
        if all(g["passed"] for g in measured["gates"].values())
        else "NOT all passed: the stock model stays the default; this one is opt-in",
        size=size,
        onnx_sha=manifest["files"]["model_qint8.onnx"],
    )
    (BUNDLE / "MODEL.md").write_text(card)
    print(f"  shipped {shipped} ({size:.1f} MB) -> {BUNDLE}")


CARD = """# Model card: {id}

all-MiniLM-L6-v2 fine-tuned for describing films (issue 14). Served as int8 ONNX
(`model_qint8.onnx`, sha256 `{onnx_sha}`), {size:.1f} MB with its tokenizer; every file's
sha256 is in `marquee_model.json` and checked at startup. Made by `make train-encoder`
(`bench/train_encoder.py --ship`); the fp32 weights are not committed (they stay under
`.data/encoder/`).

## Data
- {requests} tomt_dev requests (`../shared/data/queries/tomt_dev.jsonl`) on the training side
  of the **{split}** split: every request for a fixed 80 % of the answer films (by a hash of
  the TMDB id). Requests for the other 20 % are held out and measured below; none was used.
- Each request is paired with its answer's indexed text and one hard negative mined with the
  stock hybrid search (fused ranks 3-30, never the answer).
- Self-supervised catalog pairs (`../shared/data/catalog/movies.csv`): {pairs}. No film
  answering a held-out request, the well-known-films set or a lookup request is used.

## Training
Multiple-negatives ranking loss (in-batch negatives plus the hard negative), one pass, seeded:
{recipe}. {steps} steps, {minutes:.1f} min on this machine (2 cores, with mining).

Loss (mean over each tenth of the steps):

| step | loss |
| ---: | ---: |
{curve}

## Gates (held-out requests, int8 as served; {passed})

| gate | tuned | needs | passed |
| --- | ---: | --- | --- |
{gates}

The side-by-side tables, stock against tuned for every kind of request, are in
docs/evaluation.md (`bench/eval_encoder.py`).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=SPLITS, default="movie")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--catalog-pairs", type=int, default=Recipe.catalog_pairs)
    p.add_argument("--max-tokens", type=int, default=Recipe.max_tokens)
    p.add_argument("--no-hard-negatives", action="store_true")
    p.add_argument(
        "--ship", action="store_true", help="measure the gates, package the bundle with its card"
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
