# syntax=docker/dockerfile:1
# One image for every role of the platform on Kubernetes (the chart picks the command):
#   code server  dagster api grpc -m orchestration_platform.definitions -a defs -h 0.0.0.0 -p 3030
#   webserver    dagster-webserver -h 0.0.0.0 -p 3000 -w /dagster-workspace/workspace.yaml
#   daemon       dagster-daemon run -w /dagster-workspace/workspace.yaml
#   run workers  started by K8sRunLauncher with the code server's image (DAGSTER_CURRENT_IMAGE)
#   training     python -m orchestration_platform.training   (a Pipes pod, see lib/ml/training_pod.py)
#   serving      uvicorn orchestration_platform.serving.app:app --host 0.0.0.0 --port 8080
# Build: docker build -t REGISTRY/orchestration-platform:$(git rev-parse --short HEAD) .
# For reproducible builds pin the base by digest too: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:...

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /opt/orchestration-platform
# Dependencies first (a layer that only changes with setup.py), against an empty package.
COPY setup.py pyproject.toml ./
RUN mkdir orchestration_platform \
    && touch orchestration_platform/__init__.py \
    && /opt/venv/bin/pip install --upgrade "pip>=25" \
    && /opt/venv/bin/pip install -e .
# The project stays a source tree with pyproject.toml at its root: load_from_defs_folder finds
# the defs module through pyproject.toml's [tool.dg] table (an ordinary wheel install loses it).
COPY orchestration_platform ./orchestration_platform
RUN /opt/venv/bin/python -m compileall -q /opt/orchestration-platform/orchestration_platform \
    && /opt/venv/bin/python -c "import orchestration_platform.definitions"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="orchestration-platform" \
      org.opencontainers.image.description="Dagster code location, run worker, training job and model serving"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_DEPLOYMENT=prod \
    PLATFORM_DATA_DIR=/var/lib/orchestration-platform
# A fixed numeric non-root user: the chart's securityContext runs as this uid (runAsNonRoot needs a number).
RUN groupadd --system --gid 10001 platform \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin platform \
    && mkdir -p /opt/dagster/dagster_home /var/lib/orchestration-platform \
    && chown 10001:10001 /opt/dagster/dagster_home /var/lib/orchestration-platform
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/orchestration-platform /opt/orchestration-platform
WORKDIR /opt/orchestration-platform
USER 10001:10001
EXPOSE 3030 3000 8080
# One image, several roles: health is checked per role by the chart's probes (gRPC health check,
# /server_info, /healthz), so a single image-wide HEALTHCHECK would be wrong for all but one role.
HEALTHCHECK NONE
CMD ["dagster", "api", "grpc", "-m", "orchestration_platform.definitions", "-a", "defs", "-h", "0.0.0.0", "-p", "3030"]
