"""Embedder settings, read once at startup (env prefix ``MARQUEE_EMBEDDER_``)."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from pydantic import Field, PositiveInt
from pydantic_settings import SettingsConfigDict

from marquee_shared.model.encoder import Backend
from marquee_shared.model.resolve import STOCK
from marquee_shared.settings import CommonSettings


def default_consumer_name() -> str:
    # Unique per replica *and* per process start: two replicas must never share a name (they
    # would steal each other's pending entries); a restarted process gets a new name, and the
    # entries its predecessor left pending are claimed by the live consumers.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class EmbedderSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_EMBEDDER_", extra="ignore", validate_by_name=True
    )

    group: str = Field(default="embedders", description="Consumer group shared by all replicas.")
    consumer_name: str = Field(default_factory=default_consumer_name)
    batch_size: PositiveInt = Field(
        default=64, le=1024, description="Entries read (and embedded) per XREADGROUP."
    )
    poll_ms: PositiveInt = Field(default=1000, description="XREADGROUP BLOCK timeout.")
    model: str = Field(
        default=STOCK,
        min_length=1,
        description="The embedding model: stock (all-MiniLM-L6-v2, packaged), movie-tuned (the "
        "packaged fine-tuned bundle, in builds that have it) or the path to a "
        "sentence-transformers folder or a Marquee model bundle. The collection records its "
        "model; a different one here stops startup. Keep it the same as search's.",
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
        "(needs the torch extra: pip install 'marquee-embedder[torch]'). "
        "Keep it the same as search's, so queries and documents are embedded alike.",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where exported ONNX files are kept (default ~/.cache/marquee/onnx).",
    )
    torch_threads: PositiveInt | None = Field(
        default=None, description="Intra-op threads for the model; default: the CPU count."
    )
    dead_letter_stream: str = Field(default="marquee:catalog:v1:dead")
    index_changes_stream: str = Field(
        default="marquee:index:v1:changes",
        description="Changelog of records written to Chroma (tmdb_id, content_hash; empty hash = "
        "deleted), for readers that keep derived indexes in step.",
    )
    index_changes_maxlen: PositiveInt = Field(
        default=200_000, description="Approximate length the changelog is capped at."
    )
    recovery_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often abandoned entries are claimed and the stream trimmed.",
    )
    claim_idle_ms: PositiveInt = Field(
        default=60_000,
        description="An entry pending this long on any consumer is claimed by a live one. Must "
        "exceed the slowest batch, or a busy replica's work is claimed and done twice.",
    )
    dead_consumer_idle_ms: PositiveInt = Field(
        default=600_000,
        description="A consumer name in the group that has neither read nor sent its replica's "
        "heartbeat for this long (a replica killed or restarted under a new name) is deleted "
        "from the group, once its pending entries have been claimed (XGROUP DELCONSUMER only "
        "when it holds none).",
    )
    max_deliveries: PositiveInt = Field(
        default=5, description="Deliveries after which a failing event is dead-lettered."
    )
    self_repair_interval_s: float = Field(
        default=900.0,
        ge=0,
        description="How often one replica checks that every record in the live collection is "
        "found by a query with its own vector, and re-indexes those Chroma no longer returns "
        "(self_repair.py). 0 turns the check off.",
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="On SIGTERM, how long the batch in hand (and a claimed batch being "
        "re-applied) may take to finish and be acknowledged. What is not done by then is "
        "released: left pending and made claimable by the live replicas at once. Keep it below "
        "the orchestrator's grace period (compose stop_grace_period, Kubernetes "
        "terminationGracePeriodSeconds) with room for one model forward pass.",
    )
    # -- model migration (marquee-embedder migrate; docs/operations.md) -------------------------
    migration_batch_size: PositiveInt = Field(
        default=64,
        le=1024,
        description="Ledger entries a replica claims (and embeds) per step of a migration's "
        "backfill.",
    )
    migration_rate: float = Field(
        default=100.0,
        ge=0,
        description="Most movies a second one replica copies into a migration's target (0: as "
        "fast as it can), so live events keep their share of the CPU meanwhile.",
    )
    migration_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="A backfill chunk claimed by a replica that has not finished it this long "
        "after (killed, say) is claimed by another. Must exceed one chunk's copy time.",
    )
    migration_verify_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often one replica compares a migration's target with the ledger and "
        "repairs it; a switch needs a verification at most three intervals old. Each reads "
        "every record's metadata: about 3 KB a movie.",
    )
    migration_poll_s: float = Field(
        default=2.0, gt=0, description="How often an idle replica looks for a migration."
    )
