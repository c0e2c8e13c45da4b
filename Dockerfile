# Costr in a container: `docker build -t costr .`, then see docs/operations.md, "Running several
# instances" (deploy/compose.yaml runs three behind nginx). The base image is an argument so
# that a build without access to Docker Hub can name a local Debian image with Python 3.11.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/costr
# What `pip install .` reads: the package, its built-in plugins, and the shipped configuration
# (costr/config/defaults links to the top-level providers.yaml and routing_policies/).
COPY pyproject.toml README.md providers.yaml ./
COPY routing_policies routing_policies
COPY plugins plugins
COPY costr costr
RUN /opt/costr/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${PYTHON_IMAGE}
RUN useradd --uid 10001 --user-group --home-dir /data --create-home --shell /usr/sbin/nologin costr
COPY --from=build /opt/costr /opt/costr
# Keys, credits and the ledger: SQLite under /data unless COSTR_DATABASE_URL names PostgreSQL.
# COSTR_DRAIN_SECONDS: on SIGTERM, answer 503 "draining" on the health check and close each
# connection after its answer for this long, so a load balancer moves away before the
# listener closes; a stop must allow it plus the 30 s grace for answers in flight.
ENV PATH=/opt/costr/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COSTR_DATA_DIR=/data \
    COSTR_DRAIN_SECONDS=5
USER costr
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/router/health', timeout=4)"]
CMD ["costr", "serve", "--host", "0.0.0.0", "--port", "8000"]
