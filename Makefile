# Synthetic market data over gRPC. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 50051
HTTP_PORT ?= 8080
BENCH_ARGS ?=

PROTO_SRC := protos/marketdata/v1/market_data.proto
PROTO_OUT := marketdata/v1/market_data_pb2.py marketdata/v1/market_data_pb2.pyi marketdata/v1/market_data_pb2_grpc.py \
	marketdata/v1/market_data.binpb
STAMP := $(VENV)/.installed
# The Kubernetes manifests (kustomization.yaml is kustomize's, not the API's) and the oldest
# Kubernetes release they are validated against.
K8S_MANIFESTS := $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
KUBERNETES_VERSION ?= 1.30.0

.DEFAULT_GOAL := help
.PHONY: help install proto run client test lint bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) $(PROTO_OUT) ## create .venv at the repo root with everything installed

$(PROTO_OUT) &: $(PROTO_SRC) $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
		--include_source_info --descriptor_set_out=marketdata/v1/market_data.binpb $(PROTO_SRC)

proto: $(PROTO_OUT) ## generate marketdata/v1/*_pb2*.py (and the descriptor set with comments) from protos/

run: install ## start the server: gRPC on $(HOST):$(PORT), HTTP and the live page on $(HTTP_PORT) (Ctrl-C stops it)
	$(PY) -m server --host $(HOST) --port $(PORT) --http-port $(HTTP_PORT)

client: install ## sample call against a running server (make run in another terminal)
	$(PY) -m client --target $(HOST):$(PORT) get --periods 100 --start-price 70 --mu 0.05 --sigma 0.3 --delta 1

test: install ## run the test suite (the live page's tests need chromium, installed via apt if missing)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| { echo "make test needs chromium and its driver: apt-get install chromium chromium-driver"; exit 1; }
	$(PY) -m pytest -q -n 2

lint: install ## ruff over the hand-written code; hadolint on the Dockerfile; deploy/k8s against the API schemas
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/hadolint --failure-threshold style Dockerfile
	$(VENV)/bin/kubernetes-validate --quiet --strict --kubernetes-version $(KUBERNETES_VERSION) $(K8S_MANIFESTS)

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: install $(VENV)/.bench ## measure speed: prints a table (not a test; needs h2load, installed via apt if missing; BENCH_ARGS="--rows 11,12" picks rows)
	@command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client) \
		|| { echo "make bench needs h2load: apt-get install nghttp2-client"; exit 1; }
	$(PY) -m bench $(BENCH_ARGS)

clean: ## remove the venv, generated code and caches
	rm -rf $(VENV) $(PROTO_OUT) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
