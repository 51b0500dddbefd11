# lstm-serve container image (the bundled default model included).
#
# Targets:
#   cpu (default, last stage)  CPU inference; one uvicorn worker per container.
#   cuda                       the same image, marked for the NVIDIA container runtime;
#                              build it with a CUDA build of torch (TORCH_SPEC/PIP_EXTRA_ARGS).
#   bench                      the server's venv plus the `bench` extra, for `lstm-serve-bench`.
#
# Build arguments:
#   BASE_IMAGE      a Debian-like image with python3 (>= 3.10) and its venv module.
#   TORCH_SPEC      the torch requirement, installed first in its own layer.
#   PIP_EXTRA_ARGS  extra pip options for every install, e.g. an index that serves the
#                   CPU (or a CUDA) build of torch: --extra-index-url URL. No host is baked in.
#   PIP_SOURCE      "index" (default): pip's configured index; "wheels": install offline,
#                   --no-index from the wheels/ directory of the build context.
#
#   docker build -t lstm-serve:cpu .
#   docker build --build-arg PIP_SOURCE=wheels -t lstm-serve:cpu .     # offline, ./wheels
#   docker build --target cuda --build-arg PIP_EXTRA_ARGS="--extra-index-url URL" \
#       -t lstm-serve:cuda .
#
# No `# syntax=` line on purpose: the builder's built-in Dockerfile frontend is used, so a
# build needs no registry. Needs BuildKit (only the stages a target needs are built).

ARG BASE_IMAGE=python:3.11-slim
ARG PIP_SOURCE=index

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Where the builder gets its packages: pip's index, or a directory of wheels.
FROM base AS pip-index

FROM base AS pip-wheels
COPY wheels/ /wheels/
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheels

# (a stage of this file, chosen by PIP_SOURCE, not an image to tag)
# hadolint ignore=DL3006
FROM pip-${PIP_SOURCE} AS builder
ARG TORCH_SPEC="torch==2.13.0"
ARG PIP_EXTRA_ARGS=""
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch alone first: the biggest layer, kept in cache while the code changes.
# PIP_EXTRA_ARGS is split into options on purpose (unquoted); TORCH_SPEC is pinned.
# hadolint ignore=SC2086,DL3013
RUN pip install --no-cache-dir ${PIP_EXTRA_ARGS} "${TORCH_SPEC}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models/ models/
COPY service/ service/
COPY bench/ bench/
COPY lstm_serve/ lstm_serve/
# A non-editable install: the bundled model is package data of `models`. Fail the build
# rather than ship an image without it (-I: import the installed package, not ./models).
# hadolint ignore=SC2086
RUN pip install --no-cache-dir ${PIP_EXTRA_ARGS} . \
    && python -I -c "import pathlib, models; d = pathlib.Path(models.__file__).parent / 'default'; assert (d / 'model.safetensors').is_file() and (d / 'config.json').is_file(), f'no bundled model in {d}'"

FROM builder AS bench-builder
# The extra of the project itself; its pins live in pyproject.toml.
# hadolint ignore=SC2086,DL3013
RUN pip install --no-cache-dir ${PIP_EXTRA_ARGS} ".[bench]"

# The user and environment shared by the server and bench images.
FROM base AS app
RUN groupadd --system --gid 10001 lstm \
    && useradd --system --uid 10001 --gid lstm --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin lstm
# HOME=/tmp: the root filesystem may be mounted read-only (Kubernetes), /tmp is writable.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp
WORKDIR /tmp

FROM app AS bench
COPY --from=bench-builder /opt/venv /opt/venv
USER 10001:10001
CMD ["lstm-serve-bench", "--help"]

FROM app AS runtime
COPY --from=builder /opt/venv /opt/venv
ENV LSTM_SERVE_HOST=0.0.0.0 \
    LSTM_SERVE_PORT=8000 \
    LSTM_SERVE_LOG_JSON=true \
    WEB_CONCURRENCY=1
USER 10001:10001
EXPOSE 8000
# Ready = model loaded and warmed up; the port follows LSTM_SERVE_PORT. No curl needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LSTM_SERVE_PORT', '8000'), timeout=4)"]
# One process, one uvicorn worker: scale with replicas, not workers (sessions and the
# batcher live in this process).
CMD ["lstm-serve"]

FROM runtime AS cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.opencontainers.image.title="lstm-serve (CUDA)"

FROM runtime AS cpu
LABEL org.opencontainers.image.title="lstm-serve"
