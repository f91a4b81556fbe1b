# Causeway. `make test` is what CI runs (.ci/run); `make demo` shows the proxy.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Fuzz targets run FUZZTIME each in `make test` (more with `make fuzz
# FUZZTIME=5m`). The CI budget is a count of inputs, not a duration: with a
# duration, a loaded machine can make Go's fuzz coordinator miss its own
# deadline and fail with "context deadline exceeded" although nothing failed.
FUZZTIME ?= 20000x
FUZZ_TARGETS := \
	./proxy/router:FuzzMatch \
	./proxy/router:FuzzRewritePath \
	./proxy/xdsclient:FuzzTranslateRouteConfig \
	./proxy/xdsclient:FuzzTranslateListener \
	./proxy/leanxds:FuzzUnmarshalJSON \
	./proxy/telemetry:FuzzAppendJSONString \
	./proxy:FuzzH2Server \
	./proxy:FuzzReadRequestFast \
	./proxy:FuzzReadResponseFast \
	./proxy:FuzzWriteRequestFast \
	./gateway:FuzzTranslateYAML \
	./trust/bundles:FuzzParseDocument \
	./trust/issuer:FuzzSignCSR

.PHONY: all build test unit fuzz lint tools bench generate up demo clean

all: build

# The proxy is built lean (docs/benchmarks.md, "Sidecar hot path"): no cgo
# (libc is not mapped) and grpc's x/net/trace left out (it links html/template,
# whose reflect.MethodByName keeps every exported method of every type).
build:
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -ldflags '$(LDFLAGS)' -o $(BIN)/causeway-proxy ./cmd/causeway-proxy
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/causeway ./cmd/causeway

# tools: pinned, built from the Go module proxy into bin/ once; protoc from
# Debian (as root) for the generated-code drift check.
tools: $(BIN)/staticcheck
	@if ! command -v protoc >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "tools: installing protobuf-compiler"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; \
	fi

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	bash hack/genproto.sh --check

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

test: lint unit fuzz conformance e2e

# e2e: end-to-end tests that assert timings (failover within 1 s, zero
# failed requests at 500 req/s), run one at a time after everything else,
# so no other test binary shares the 2 cores with them.
.PHONY: e2e
e2e:
	CAUSEWAY_E2E=1 $(GO) test -count=1 -p 1 -timeout 10m -v -run '^TestFailoverThroughGateways$$' ./internal/up/

bench: build
	bash bench/run.sh

# Regenerates trust/trustpb, federation/federationpb and the sidecar's lean
# xDS messages in proxy/leanxds (hack/genproto.sh: Debian's protoc 3.21.12,
# protoc-gen-go, protoc-gen-go-grpc and protoc-gen-validate pinned, in bin/),
# byte for byte.
generate:
	$(GO) generate ./...

# The main job: three clusters federating on this machine, a failover
# walk-through, then running until Ctrl-C (docs/up.md).
up: build
	$(GO) build -o $(BIN)/demoapp ./internal/up/demoapp
	$(BIN)/causeway up --traffic

demo: build
	$(BIN)/causeway demo

clean:
	rm -rf $(BIN)

# testbins: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
# and echo-basic for internal/testcluster, built from source (hack/testbins)
# into bin/ once, and shared between clones through ~/.cache/causeway/testbins.
# As root it also installs iproute2 and iptables (real pods, traffic capture).
.PHONY: testbins
testbins:
	@if [ "$$(id -u)" = 0 ] && ! { command -v ip && command -v iptables; } >/dev/null 2>&1; then \
		echo "testbins: installing iproute2 iptables"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables >/dev/null; \
	fi
	BIN=$(BIN) GO=$(GO) bash hack/testbins/build.sh
# The unit tests start real clusters (internal/testcluster): build the binaries
# first, and fail rather than skip if they are missing.
unit: testbins
unit: export CAUSEWAY_REQUIRE_TESTBINS := 1
include hack/manifests/manifests.mk
include hack/dashboard/dashboard.mk
include hack/conformance/conformance.mk
