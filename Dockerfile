# syntax=docker/dockerfile:1
# Checkpoint: `docker build -t checkpoint .` (BuildKit, the default since Docker 23) then
#   docker run -p 5000:5000 -v checkpoint-data:/data \
#     -e CHECKPOINT_REGISTRY_URL=http://mlflow:5000 -e CHECKPOINT_AUTH=mlflow checkpoint
# The image listens on 0.0.0.0, so `checkpoint serve` refuses to start with CHECKPOINT_AUTH=none
# (the default) unless CHECKPOINT_ALLOW_UNAUTHENTICATED=true says that is really meant.
# MLflow itself is not in this image: Checkpoint talks to it over HTTP only.
# Deploying it (compose, Kubernetes, migrations, stop timeout, MLflow's flags): docs/deploy.md.

# --- build: turn the source into wheels, so no compiler or source tree reaches the runtime image ---
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml ./
COPY checkpoint ./checkpoint
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

# --- runtime ---
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHECKPOINT_HOST=0.0.0.0 \
    CHECKPOINT_PORT=5000 \
    CHECKPOINT_DATA_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "checkpoint-mlflow[postgres]"
# A fixed, unprivileged uid so a mounted volume's ownership can be set to match.
RUN groupadd --system --gid 10001 checkpoint \
    && useradd --system --uid 10001 --gid checkpoint --home-dir /data --no-create-home checkpoint \
    && mkdir -p /data \
    && chown checkpoint:checkpoint /data
# The SQLite database (the default) and the generated secret key live here; use PostgreSQL
# (CHECKPOINT_DATABASE_URL=postgresql+psycopg://...) for more than one replica.
VOLUME ["/data"]
WORKDIR /data
USER checkpoint:checkpoint
EXPOSE 5000
# No curl in the slim image: ask the running server with the Python it already has.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/checkpoint/healthz' % os.environ.get('CHECKPOINT_PORT', '5000'), timeout=4)"]
# `checkpoint serve` applies the migrations once, then forks the gunicorn workers.
CMD ["checkpoint", "serve"]
