# Container image for the comfy-catalog service.
#
#   docker build -t comfy-catalog-service:local .
#   podman build --format docker -t comfy-catalog-service:local .
#
# BASE_IMAGE must provide `python3` (>= 3.11) with the `venv` module. The default
# is the official slim image; deploy/smoke-test.sh builds with a Debian bookworm
# stand-in when no registry can be reached. Everything is installed into a
# virtualenv at /opt/venv, so a Debian base that refuses system-wide pip
# installs (PEP 668, "externally-managed-environment") works the same way.
#
# The service runs as uid/gid 1000: the uid most ComfyUI images and desktop
# Linux users own their model folders with, so a bind-mounted models folder is
# readable (and the catalog folder writable) without chown. Override at run
# time with `--user` / compose `user:` if your files belong to someone else.
ARG BASE_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------
# Builder: build the project's wheel and install it (plus its dependencies,
# all published as binary wheels) into /opt/venv. Only that folder is copied
# into the final image, so the final image carries no build front-end, no
# sources and no pip cache.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

# Lets deploy/smoke-test.sh prune this project's stale build-cache images.
LABEL comfy-catalog.stage="builder"

# Optional: let the build use the same package index / CA bundle as the host
# (a mirror or a TLS-inspecting proxy). Unset by default: plain PyPI.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY service ./service

# pip is the build front-end here (PEP 517, setuptools fetched into an
# isolated build env); the wheel is then installed into the runtime venv.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
    && /opt/venv/bin/python -c "import service, aiohttp, orjson, watchfiles"

# ---------------------------------------------------------------------------
# Final image: the base interpreter plus /opt/venv. No compilers, no build
# tools, no sources.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="comfy-catalog-service" \
      org.opencontainers.image.description="Knows which CivitAI model versions are in a ComfyUI catalog and which are on disk." \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8189 \
    CATALOG_DIR=/data/catalogs \
    MODELS_DIR=/models

# uid/gid 1000 (see the header). /data/catalogs is created owned by that user
# so a fresh named volume mounted there inherits the ownership; /models is the
# mount point for ComfyUI's models folder (read access is all the service needs).
RUN groupadd --gid 1000 catalog \
    && useradd --uid 1000 --gid 1000 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin catalog \
    && mkdir -p /data/catalogs /models \
    && chown -R 1000:1000 /data \
    && chmod 0750 /data/catalogs

COPY --from=builder /opt/venv /opt/venv

USER 1000:1000
WORKDIR /data

EXPOSE 8189

# No curl in slim images: probe with the interpreter that is already there.
# Exec form, so PORT is read from the environment by Python itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8189'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# The service handles SIGTERM and exits within SHUTDOWN_TIMEOUT_S (default 5 s);
# give the runtime a longer stop timeout than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM

CMD ["python", "-m", "service"]
