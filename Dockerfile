# Voltaro: OCPP 1.6J Central System. See docs/docker.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 voltaro \
    && useradd --system --uid 10001 --gid voltaro --home-dir /var/lib/voltaro --no-create-home voltaro \
    && mkdir -p /var/lib/voltaro /run/voltaro /app \
    && chown voltaro:voltaro /var/lib/voltaro /run/voltaro \
    && chmod 0750 /run/voltaro

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voltaro ./voltaro
COPY console ./console
RUN pip install --no-cache-dir .

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
USER 10001:10001

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["voltaro", "ctl", "status"]

ENTRYPOINT ["voltaro"]
CMD ["serve"]
