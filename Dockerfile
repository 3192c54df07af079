# ncentral-patch-exporter container image.
#
#   docker build -t ncentral-patch-exporter .
#   docker run -d -p 10120:10120 \
#     -v "$PWD/config.yaml:/etc/ncentral-patch-exporter/config.yaml:ro" \
#     -e NCENTRAL_API_TOKEN \
#     -v ncentral-patch-exporter-data:/var/lib/ncentral-patch-exporter \
#     ncentral-patch-exporter
#
# No secret is part of the image: the N-central API token comes from the NCENTRAL_API_TOKEN environment
# variable or from a mounted file named by `ncentral.api_token_file` in the config (e.g. a Docker or
# Kubernetes secret under /run/secrets/).

# --- build stage: a virtual environment holding the exporter and its dependencies --------------------
FROM python:3.12-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# No pip inside it: the base image's pip installs into it, so the runtime gets no second copy of pip.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ ./exporter/
RUN python -m pip --python /opt/venv/bin/python install .

# --- final stage: the same base image, the virtual environment, a fixed non-root user ----------------
FROM python:3.12-slim

LABEL org.opencontainers.image.title="ncentral-patch-exporter" \
      org.opencontainers.image.description="Prometheus exporter for N-able N-central patch reports" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid exporter --no-create-home \
        --home-dir /var/lib/ncentral-patch-exporter --shell /usr/sbin/nologin exporter \
 && mkdir -p /etc/ncentral-patch-exporter /var/lib/ncentral-patch-exporter \
 && chown exporter:exporter /var/lib/ncentral-patch-exporter \
 && chmod 0750 /var/lib/ncentral-patch-exporter

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/ncentral-patch-exporter
# Stored report results survive restarts here (see --storage.path below).
VOLUME ["/var/lib/ncentral-patch-exporter"]
EXPOSE 10120

# Standard library only (no curl in the image). Set HEALTHCHECK_URL when the listen address differs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:10120/-/healthy'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["ncentral-patch-exporter"]
CMD ["--config.file=/etc/ncentral-patch-exporter/config.yaml", \
     "--storage.path=/var/lib/ncentral-patch-exporter/state.json", \
     "--web.listen-address=:10120"]
