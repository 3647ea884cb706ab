# syntax=docker/dockerfile:1
# knapsack-rl service image.
#   docker build -t knapsack-service .
#   docker run --read-only --tmpfs /var/cache/krl:uid=10001,gid=10001 -p 8000:8000 knapsack-service
# Stage 1 builds wheels of client/ and service/ and of every dependency; stage 2 installs them
# into a slim runtime without compilers or pip caches, runs as an unprivileged user and
# writes only under /var/cache/krl (numba cache, temporary files), so it runs with a
# read-only root filesystem (deploy/k8s/base/deployment.yaml).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY constraints.txt ./
COPY client/ client/
COPY service/ service/
# One wheel per distribution, dependencies included, pinned by the workspace constraints
# (numba==0.65.0 as in the development environment).
RUN pip wheel --constraint constraints.txt --wheel-dir /wheels ./client ./service

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG KRL_UID=10001
# Must match service/pyproject.toml's version: pip installs exactly the wheel built above.
ARG KRL_VERSION=0.1.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/var/cache/krl/numba \
    TMPDIR=/var/cache/krl/tmp \
    KRL_HOST=0.0.0.0 \
    KRL_PORT=8000 \
    KRL_WORKERS=1
RUN groupadd --system --gid "${KRL_UID}" krl \
    && useradd --system --uid "${KRL_UID}" --gid krl --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin krl \
    && mkdir -p /var/cache/krl/numba /var/cache/krl/tmp \
    && chown -R krl:krl /var/cache/krl
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "knapsack-service==${KRL_VERSION}"
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/krl-entrypoint

# Compile the numba kernels now, into a seed cache inside the image. At start the entrypoint
# copies it into NUMBA_CACHE_DIR (a writable volume): numba only uses a cache directory it can
# write to. A node with another CPU model misses the cache and compiles once at start (the
# Kubernetes startupProbe allows for it).
RUN NUMBA_CACHE_DIR=/opt/krl/numba-cache \
    python -c "from knapsack_service.engine import warm_up; warm_up()" \
    && chmod -R a+rX /opt/krl/numba-cache

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER ${KRL_UID}:${KRL_UID}
WORKDIR /var/cache/krl
EXPOSE 8000
VOLUME ["/var/cache/krl"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KRL_PORT', '8000'), timeout=2)"]
# Host, port and workers come from KRL_HOST / KRL_PORT / KRL_WORKERS (pydantic-settings);
# arguments after the image name are passed on to `knapsack-service serve`.
ENTRYPOINT ["/usr/local/bin/krl-entrypoint"]
