"""Connecting to the Chroma HTTP server and the movie collection (embedder, search, explainer),
and the model id stamped on the collection.

Needs the ``chroma`` extra: ``pip install marquee-shared[chroma]``.

Vectors of two models are not comparable, so the collection records which model made its
vectors (metadata ``marquee:model``, a ``ModelId``). Whoever creates the collection stamps it;
the embedder stamps a collection that has no stamp yet (one made before model ids existed);
embedder and search refuse to start against a collection stamped with another model
(``ModelMismatchError``), instead of silently mixing vector spaces.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import chromadb
import structlog
from chromadb.config import Settings as ChromaClientSettings
from chromadb.errors import ChromaAuthError

from marquee_shared.backoff import Backoff
from marquee_shared.model.identity import ModelId

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from chromadb.api import AsyncClientAPI
    from chromadb.api.models.AsyncCollection import AsyncCollection
    from pydantic import AnyHttpUrl, SecretStr


log = structlog.get_logger(__name__)
T = TypeVar("T")

MODEL_KEY = "marquee:model"
"""Collection metadata: the id of the model whose vectors the collection holds."""


class ModelMismatchError(RuntimeError):
    """The collection holds another model's vectors than the one this service would use."""

    def __init__(self, collection: str, stored: str, configured: ModelId, service: str) -> None:
        self.stored = stored
        self.configured = configured
        super().__init__(
            f"the Chroma collection {collection!r} holds vectors of model {stored}, but this "
            f"{service} is configured with model {configured}: vectors of two models are not "
            f"comparable, so this {service} will not run against it. Set "
            f"MARQUEE_{service.upper()}_MODEL "
            "to the collection's model, or point MARQUEE_CHROMA_COLLECTION at a collection "
            "built with the configured one (docs/operations.md, model ids)"
        )


TOKEN_HEADER = "X-Chroma-Token"  # noqa: S105 - a header name, not a secret
"""Chroma's token header (its clients' ``chroma_auth_token_transport_header`` default). The
Chroma 1.x server (`chroma run`, the chromadb/chroma image) has no authentication of its own,
so the proxy in front of it checks this header (deploy/k8s/chroma-auth.conf.template)."""


class ChromaAuthRefusedError(PermissionError):
    """The proxy in front of Chroma answered 401. Not retried: the same token would be refused
    again, and "cannot reach Chroma" after 30 s would hide why."""

    def __init__(self, chroma_url: AnyHttpUrl, token: SecretStr | None) -> None:
        setting = "is not the token it expects" if token is not None else "is not set"
        super().__init__(
            f"Chroma at {chroma_url} refused the request: MARQUEE_CHROMA_TOKEN {setting} "
            "(the proxy in front of Chroma demands it; docs/operations.md, security)"
        )


def auth_headers(token: SecretStr | None) -> dict[str, str] | None:
    """The headers a Chroma client sends with every request: the token, when one is set.

    One token per process: Chroma's async clients share one HTTP transport per event loop,
    with the headers of the first client made in it (chroma-core/chroma#6869)."""
    return {TOKEN_HEADER: token.get_secret_value()} if token is not None else None


async def _when_up(
    chroma_url: AnyHttpUrl,
    token: SecretStr | None,
    wait_s: float,
    first_call: Callable[[AsyncClientAPI], Awaitable[T]],
) -> tuple[AsyncClientAPI, T]:
    """A client and the answer to its first call, retrying both (with backoff) until the
    server answers or ``wait_s`` has passed. A refused token is not retried: waiting cannot
    fix it."""
    deadline = asyncio.get_running_loop().time() + wait_s
    backoff = Backoff(first=0.2, cap=2.0)
    while True:
        try:
            client = await chromadb.AsyncHttpClient(
                host=chroma_url.host or "127.0.0.1",
                port=chroma_url.port or 8000,
                ssl=chroma_url.scheme == "https",
                headers=auth_headers(token),
                # Telemetry would try to reach the internet from every process.
                settings=ChromaClientSettings(anonymized_telemetry=False),
            )
            answer = await first_call(client)
        except ChromaAuthError as exc:
            raise ChromaAuthRefusedError(chroma_url, token) from exc
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                msg = f"cannot reach Chroma at {chroma_url} after {wait_s:g}s: {exc}"
                raise ConnectionError(msg) from exc
            delay = backoff.next()
            log.warning("chroma_unavailable", url=str(chroma_url), error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
        else:
            return client, answer


async def connect(
    chroma_url: AnyHttpUrl, *, wait_s: float = 30.0, token: SecretStr | None = None
) -> AsyncClientAPI:
    """A client once the server answers (retrying while it starts), no collection touched:
    for the migration commands, which must not re-create a collection a migration dropped."""
    client, _ = await _when_up(chroma_url, token, wait_s, lambda c: c.heartbeat())
    return client


async def open_collection(
    chroma_url: AnyHttpUrl,
    name: str,
    *,
    wait_s: float = 30.0,
    model: ModelId | None = None,
    token: SecretStr | None = None,
) -> tuple[AsyncClientAPI, AsyncCollection]:
    """Connect (retrying while the server starts) and get or create the movie collection.
    With ``model``, a collection created here is stamped with it (an existing one is left as
    it is: check it with ``check_collection_model``). With ``token`` (MARQUEE_CHROMA_TOKEN),
    every request carries it."""

    def get_or_create(client: AsyncClientAPI) -> Awaitable[AsyncCollection]:
        return client.get_or_create_collection(
            name,
            # Vectors are L2-normalised, so cosine is the natural space; no embedding
            # function: vectors always come from our model, never Chroma's default (which
            # would download one at run time).
            configuration={"hnsw": {"space": "cosine"}},
            # Applied only when the collection is created (Chroma ignores it otherwise), so
            # two services starting together cannot both stamp a new collection.
            metadata={MODEL_KEY: str(model)} if model is not None else None,
            embedding_function=None,
        )

    return await _when_up(chroma_url, token, wait_s, get_or_create)


def collection_model(collection: AsyncCollection) -> str | None:
    """The model id stamped on the collection (as last read from Chroma), if any."""
    value = (collection.metadata or {}).get(MODEL_KEY)
    return str(value) if value else None


async def read_collection_model(client: AsyncClientAPI, name: str) -> str | None:
    """The model id stamped on the collection now (read from Chroma), if any."""
    return collection_model(await client.get_collection(name, embedding_function=None))


def same_model(stored: str, model: ModelId) -> bool:
    """Whether a stamped id names ``model``'s vectors (the same digest)."""
    try:
        return ModelId.parse(stored).same_vectors(model)
    except ValueError:
        return False


async def check_collection_model(
    client: AsyncClientAPI,
    collection: AsyncCollection,
    model: ModelId,
    *,
    service: str,
    stamp_unstamped: bool,
) -> str | None:
    """The collection's model id once checked against ``model``; raises
    ``ModelMismatchError`` when they differ (same digest counts as the same model).

    An unstamped collection is stamped with ``model`` when ``stamp_unstamped`` (the embedder:
    it writes the vectors) or when it is empty (nothing in it can disagree); otherwise it stays
    unstamped and None is returned (search: it checks again once a stamp appears).
    """
    stored = collection_model(collection)
    if stored is None:
        count = await collection.count()
        if not stamp_unstamped and count > 0:
            log.warning(
                "collection_model_unknown",
                collection=collection.name,
                records=count,
                model=str(model),
                hint="a collection from before model ids; the embedders stamp it",
            )
            return None
        # modify() replaces the metadata whole: keep what is there. Chroma refuses to be sent
        # the legacy "hnsw:*" keys again (the index settings live in the configuration now).
        kept = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
        metadata: dict[str, Any] = {**kept, MODEL_KEY: str(model)}
        await collection.modify(metadata=metadata)
        # Two services stamping at once: the last write wins, and re-reading shows which.
        stored = await read_collection_model(client, collection.name) or str(model)
        if count > 0:
            log.warning(
                "collection_model_stamped",
                collection=collection.name,
                records=count,
                model=stored,
                hint="a collection from before model ids, assumed to hold this model's vectors; "
                "if another model made them, re-embed the catalog",
            )
        else:
            log.info("collection_model_stamped", collection=collection.name, model=stored)
    if not same_model(stored, model):
        raise ModelMismatchError(collection.name, stored, model, service)
    return stored
