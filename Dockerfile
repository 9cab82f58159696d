# Voltaro: OCPP 1.6J Central System. See docs/docker.md.
#
# Base image. Pin it for production builds by digest:
#   docker build --build-arg BASE_IMAGE=docker.io/library/python:3.11-slim@sha256:<digest> .
# with <digest> from `podman image inspect --format '{{.Digest}}' python:3.11-slim` (or
# `docker buildx imagetools inspect python:3.11-slim`) of the image you reviewed. Our CI has
# no route to an image registry and builds on a local stand-in with the same tag
# (Debian bookworm's Python 3.11, scripts/container/python-standin.Containerfile), so no
# upstream digest has been verified by this project yet: record it here when you pin it.
#   tag:    docker.io/library/python:3.11-slim
#   digest: (not recorded: see above)
ARG BASE_IMAGE=docker.io/library/python:3.11-slim

# ---- build: resolve and install into a virtualenv; nothing of this stage but the venv ----
# ---- (no pip cache, no setuptools, no sources) reaches the final image.              ----
FROM ${BASE_IMAGE} AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/scripts/constraints.txt

WORKDIR /src
COPY scripts/constraints.txt ./scripts/
COPY pyproject.toml README.md ./
COPY voltaro ./voltaro
COPY console ./console
# A venv without pip: pip runs from the base image and installs into it. PIP_CONSTRAINT
# pins every dependency and the setuptools of the isolated build environment too.
RUN python -m venv --without-pip /opt/voltaro \
    && pip --python /opt/voltaro/bin/python install --no-compile . \
    && /opt/voltaro/bin/python -m compileall -q /opt/voltaro/lib

# ---- runtime ----------------------------------------------------------------------------
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/voltaro/bin:$PATH

RUN groupadd --system --gid 10001 voltaro \
    && useradd --system --uid 10001 --gid voltaro --home-dir /var/lib/voltaro --no-create-home voltaro \
    && mkdir -p /var/lib/voltaro /run/voltaro \
    && chown voltaro:voltaro /var/lib/voltaro /run/voltaro \
    && chmod 0750 /run/voltaro

COPY --from=build /opt/voltaro /opt/voltaro

# Chargers must reach the OCPP listener from outside the container. The HTTP API binds
# to all interfaces inside the container so that a published port works; publish it
# only deliberately (e.g. -p 127.0.0.1:8080:8080) and set api_tokens.
ENV VOLTARO_HOST=0.0.0.0 \
    VOLTARO_PORT=9000 \
    VOLTARO_HTTP_HOST=0.0.0.0 \
    VOLTARO_HTTP_PORT=8080 \
    VOLTARO_DATABASE_URL=sqlite:////var/lib/voltaro/voltaro.db \
    VOLTARO_CONTROL_SOCKET=/run/voltaro/control.sock

VOLUME ["/var/lib/voltaro", "/run/voltaro"]
EXPOSE 9000 8080
WORKDIR /var/lib/voltaro
USER 10001:10001

# `voltaro serve` shuts down gracefully on SIGTERM (in-flight messages are stored and
# answered, within shutdown_grace, 5 s by default): give it that, e.g. `docker stop -t 10`.
STOPSIGNAL SIGTERM

# Ready = the HTTP API answers and the database is reachable (GET /health/ready, no token).
# It needs the HTTP API enabled and reachable on 127.0.0.1 inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VOLTARO_HTTP_PORT', '8080') + '/health/ready', timeout=4)"]

ENTRYPOINT ["voltaro"]
CMD ["serve"]
