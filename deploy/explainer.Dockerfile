# Explainer: grounded "why this movie" explanations (internal HTTP, 8082).
# Build from the repo root: docker build -f deploy/explainer.Dockerfile -t marquee-explainer .
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
COPY services/explainer/pyproject.toml services/explainer/
RUN python deploy/pyproject_deps.py shared/pyproject.toml services/explainer/pyproject.toml \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

COPY shared/ shared/
COPY services/explainer/ services/explainer/
RUN pip install --no-deps ./shared ./services/explainer

# Numeric, so orchestrators can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8082
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8082/health', timeout=4)"]
CMD ["uvicorn", "marquee_explainer.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8082", "--no-proxy-headers"]
