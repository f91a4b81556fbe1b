#!/usr/bin/env bash
# crds.sh writes manifests/crds/causeway/ from the Go types of Causeway's API
# packages with controller-gen; with --check it writes nothing and fails when
# the committed files differ from what the types generate. Run it through
# `make manifests` / `make manifests-check` (hack/manifests/manifests.mk),
# which build $CONTROLLER_GEN first.
#
# The kubebuilder markers (group, enums, patterns, limits, the CEL rule,
# printer columns, short name) live in the API packages themselves.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONTROLLER_GEN="${CONTROLLER_GEN:-$ROOT/bin/controller-gen}"
OUT="$ROOT/manifests/crds/causeway"
# API packages, relative to the repository root.
PACKAGES=(trust/policy federation/peerapi)

check=false
case "${1:-}" in
--check) check=true ;;
"") ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [[ ! -x "$CONTROLLER_GEN" ]]; then
	echo "crds: $CONTROLLER_GEN not found; run \`make manifests\` (it builds controller-gen into bin/)" >&2
	exit 1
fi

cd "$ROOT"
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT

paths=()
for pkg in "${PACKAGES[@]}"; do
	if ! grep -qs '^// +groupName=' "$pkg"/*.go; then
		echo "crds: $pkg has no +groupName package marker; add the kubebuilder markers to $pkg" >&2
		exit 1
	fi
	paths+=("./$pkg")
done

args=(crd:headerFile="$HERE/crd-header.yaml.txt" output:crd:dir="$gen")
for p in "${paths[@]}"; do args+=(paths="$p"); done
"$CONTROLLER_GEN" "${args[@]}"

if $check; then
	if ! diff -ru "$OUT" "$gen"; then
		echo "crds: manifests/crds/causeway/ is not what the Go types generate (diff above: - committed, + generated); run \`make manifests\`" >&2
		exit 1
	fi
	echo "crds: manifests/crds/causeway/ matches the Go types"
	exit 0
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.yaml
cp "$gen"/*.yaml "$OUT/"
echo "crds: wrote $(cd "$gen" && echo *.yaml) into manifests/crds/causeway/"
