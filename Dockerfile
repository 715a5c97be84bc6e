# The service image: one image, two commands.
#   API:      catalytic serve --host 0.0.0.0 --port 8080   (metrics on METRICS_PORT, 8082)
#   webhooks: catalytic worker --host 0.0.0.0 --port 8081  (/health, /ready, /metrics)
# Build: docker build -t catalytic:0.1.0 .   (the GPU variant is Dockerfile.gpu)
#
# Stage "build" installs the package with its service, Ray-client (RAY_ADDRESS) and results-bucket
# (RESULTS_S3_BUCKET: boto3) dependencies into a virtualenv; the final stage copies only that virtualenv onto a
# fresh base (no pip, no compiler), runs as an unprivileged user, and compiles the numba kernels into the image
# with `catalytic warmup`, for a generic CPU so the cache is valid on every node.
ARG PYTHON_BASE=python:3.11.14-slim-bookworm

FROM ${PYTHON_BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY catalytic ./catalytic
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ".[service,distributed,s3]" \
 && /opt/venv/bin/python -m pip uninstall --yes pip

FROM ${PYTHON_BASE}
LABEL org.opencontainers.image.title="catalytic" \
      org.opencontainers.image.description="Lattice compute service: API (catalytic serve) and webhook worker (catalytic worker)"
# pip and setuptools of the base image are build tools: the service never installs anything at run time.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 catalytic \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin catalytic \
 && mkdir -p /opt/catalytic/numba-cache \
 && chown 10001:10001 /opt/catalytic/numba-cache
COPY --from=build /opt/venv /opt/venv
# NUMBA_CPU_NAME must be the same at build and run time: numba keys its cache to the target CPU.
# In Kubernetes the root filesystem is read-only, so NUMBA_CACHE_DIR points at an emptyDir that an init
# container seeds from this directory (`catalytic warmup --seed-from /opt/catalytic/numba-cache`).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CPU_NAME=generic \
    NUMBA_CACHE_DIR=/opt/catalytic/numba-cache \
    METRICS_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
RUN catalytic warmup --json
EXPOSE 8080 8081 8082
ENTRYPOINT ["catalytic"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
