# Included by the Makefile. Causeway's Kubernetes manifests (manifests/):
#
#   make manifests         regenerate manifests/crds/causeway/ from the Go types
#   make manifests-check   fail if they drift (part of `make lint`)
#   make manifests-test    apply the kustomize overlays to a real apiserver
#                          (manifests/manifests_test.go; needs `make testbins`,
#                          which builds kubectl)
#
# controller-gen is pinned in hack/manifests/tools/go.mod (a module of its
# own, so the project's go.mod gains nothing) and built into bin/ once.

CONTROLLER_GEN := $(BIN)/controller-gen

.PHONY: manifests manifests-check manifests-test

$(CONTROLLER_GEN): hack/manifests/tools/go.mod hack/manifests/tools/go.sum
	cd hack/manifests/tools && GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen
	@touch $@

manifests: $(CONTROLLER_GEN)
	CONTROLLER_GEN=$(CONTROLLER_GEN) bash hack/manifests/crds.sh

manifests-check: $(CONTROLLER_GEN)
	CONTROLLER_GEN=$(CONTROLLER_GEN) bash hack/manifests/crds.sh --check

manifests-test: testbins
	CAUSEWAY_REQUIRE_TESTBINS=1 $(GO) test -count=1 -timeout 10m ./manifests/...

lint: manifests-check
