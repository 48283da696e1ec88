# The market-data server as a container image. From the repository root:
#   docker build -t marketdata-grpc:0.1.0 .
#   docker run --rm -p 50051:50051 marketdata-grpc:0.1.0
# README, "Container and Kubernetes", says more; tests/test_deploy.py checks this file.

# Stage 1: generate the gRPC modules from the contract (they are not committed) and
# install the wheel built from them into a virtual environment.
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Build tools at the versions the test suite runs with, so the image generates the
# same code as `make proto` does.
ARG GRPCIO_TOOLS_VERSION=1.85.1
ARG SETUPTOOLS_VERSION=84.2.1
RUN python -m pip install --no-cache-dir \
        "grpcio-tools==${GRPCIO_TOOLS_VERSION}" "setuptools==${SETUPTOOLS_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY marketdata/ marketdata/
COPY server/ server/
COPY client/ client/

# The Makefile's proto rule, word for word (a test compares the two), then the wheel,
# then a venv holding the wheel and its dependencies: the only thing the runtime takes.
RUN python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
        --include_source_info --descriptor_set_out=marketdata/v1/market_data.binpb \
        protos/marketdata/v1/market_data.proto \
    && python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir /dist/marketdata_grpc-*.whl

# Stage 2: the same base image (the venv's interpreter path must exist), no build tools.
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="marketdata-grpc" \
      org.opencontainers.image.description="Synthetic market prices over gRPC"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A numeric UID and GID, so Kubernetes' runAsNonRoot can verify the user without
# reading /etc/passwd; the Deployment runs as the same numbers.
RUN groupadd --system --gid 10001 marketdata \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin marketdata

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

# gRPC; plaintext grpc.health.v1.Health only (for probes); Prometheus /metrics.
EXPOSE 50051 50052 9090 8080

# The server drains on SIGTERM: health turns NOT_SERVING and open calls get --grace seconds.
STOPSIGNAL SIGTERM

# Docker's own health check (Kubernetes ignores it and probes port 50052 itself).
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["marketdata-client", "health", "--target", "127.0.0.1:50052"]

# The server is PID 1 and handles SIGTERM and SIGINT itself; with --workers it also
# reaps its own children, so no init process is needed.
ENTRYPOINT ["marketdata-server"]
CMD ["--host", "0.0.0.0", "--port", "50051", "--health-port", "50052", "--metrics-port", "9090", "--http-port", "8080"]
