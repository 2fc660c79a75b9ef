# syntax=docker/dockerfile:1
# One image for every process of cqrs-lab: write-service and read-service (gunicorn), the relay, the projector
# and the one-shot migrations. Compose and Kubernetes choose the process with the container's command, which is
# exactly the command `make run` starts (deploy/local/supervisord.conf).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- deps: the pinned runtime dependencies of pyproject.toml in a virtualenv ---------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Only pyproject.toml: this layer stays cached until a dependency changes, not on every code change.
COPY pyproject.toml ./
# [project].dependencies, pinned there with ==, is the one list of runtime dependencies (dev extras stay out).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --no-compile -r requirements.txt

# ---- runtime: the virtualenv, the code and an unprivileged user -----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cqrs-lab" \
      org.opencontainers.image.description="CQRS reference system: write-service, read-service, relay, projector"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/services \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8001/healthz
# A numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /app --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
COPY deploy/docker/entrypoint.sh /usr/local/bin/cqrs-entrypoint
COPY deploy/docker/healthcheck.py /usr/local/bin/cqrs-healthcheck
WORKDIR /app
# Owned by the app user so Tilt's live_update can sync changed files into a running container.
COPY --chown=10001:10001 services /app/services
USER 10001:10001

# Documentation only: write-service, read-service, relay and projector (metrics and health).
EXPOSE 8001 8002 9101 9102

# The image's default check; Compose and Kubernetes set the right URL per process (its /readyz, its port).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["cqrs-healthcheck"]

# The entrypoint execs the command unchanged (see deploy/docker/entrypoint.sh); the default command is the
# write-service, as in deploy/local/supervisord.conf.
ENTRYPOINT ["cqrs-entrypoint"]
CMD ["gunicorn", "-c", "python:cqrs_common.gunicorn_conf", "--bind", "0.0.0.0:8001", "write_service.wsgi"]
