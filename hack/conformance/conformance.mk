# Gateway API conformance (issue 6): the official suite
# sigs.k8s.io/gateway-api/conformance v1.6.3 against a harness cluster, the
# control plane and one `causeway-proxy ingress`, once per profile (a fresh
# cluster each). Needs root (the echo-basic backends run in network
# namespaces) and the test binaries (make testbins). Writes
# docs/conformance/<profile>-report.yaml. Included from the Makefile.
#   CONFORMANCE_PROFILES  profiles to run (GATEWAY-HTTP, GATEWAY-GRPC, GATEWAY-TLS;
#                         MESH-HTTP on request: mesh pods with capture-mode sidecars)
#   CONFORMANCE_FEATURES  "core" for core features only; default: every
#                         claimed feature of the profile
#   CONFORMANCE_RUN       one test by name (e.g. HTTPRouteExactPathMatching)
.PHONY: conformance

CONFORMANCE_PROFILES ?= GATEWAY-HTTP GATEWAY-GRPC GATEWAY-TLS MESH-HTTP
CONFORMANCE_FEATURES ?=
CONFORMANCE_RUN ?=

conformance: testbins
	@set -e; for p in $(CONFORMANCE_PROFILES); do \
		echo "conformance: profile $$p"; \
		CAUSEWAY_CONFORMANCE=1 CAUSEWAY_CONFORMANCE_PROFILE=$$p \
		CAUSEWAY_CONFORMANCE_FEATURES=$(CONFORMANCE_FEATURES) CAUSEWAY_CONFORMANCE_RUN=$(CONFORMANCE_RUN) \
			$(GO) test -count=1 -timeout 30m -v -run '^TestGatewayAPIConformance$$' ./gateway/conformance/; \
	done
