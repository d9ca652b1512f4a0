# Ingest: the scheduled TMDB sync service (8084), and the `marquee-ingest` CLI for one-shot
# runs (the bundled demo, a file, TMDB lists, deletions, a sync by hand).
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

# Dependencies before code: this layer is rebuilt only when a pyproject.toml (or the pins)
# changes. constraints.txt pins every package to the version the tests ran with.
COPY constraints.txt ./
COPY deploy/pyproject_deps.py deploy/
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
RUN python deploy/pyproject_deps.py shared/pyproject.toml services/ingest/pyproject.toml \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Not editable: the demo catalog (marquee_ingest/data/*.jsonl) is installed as package data.
COPY shared/ shared/
COPY services/ingest/ services/ingest/
RUN pip install --no-deps ./shared ./services/ingest

# Numeric, so orchestrators can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8084
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8084/health', timeout=4)"]
# The long-running sync; `docker run ... marquee-ingest <command>` runs the CLI instead.
CMD ["uvicorn", "marquee_ingest.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8084", "--no-proxy-headers"]
