# Ingest: a CLI that publishes catalog events (the bundled demo, a file, or TMDB) and exits.
# Build from the repo root: docker build -f deploy/ingest.Dockerfile -t marquee-ingest .
#   docker run --rm -e MARQUEE_REDIS_URL=redis://host:6379/0 marquee-ingest marquee-ingest demo
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_OFFLINE=1

RUN groupadd --gid 10001 marquee && useradd --uid 10001 --gid 10001 --create-home marquee
WORKDIR /app

# Dependencies before code: this layer is rebuilt only when a pyproject.toml changes.
COPY deploy/pyproject_deps.py deploy/
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
RUN python deploy/pyproject_deps.py shared/pyproject.toml services/ingest/pyproject.toml \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Not editable: the demo catalog (marquee_ingest/data/*.jsonl) is installed as package data.
COPY shared/ shared/
COPY services/ingest/ services/ingest/
RUN pip install --no-deps ./shared ./services/ingest

# Numeric, so orchestrators can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
# A one-shot job, not a server: nothing to probe.
HEALTHCHECK NONE
CMD ["marquee-ingest", "demo"]
