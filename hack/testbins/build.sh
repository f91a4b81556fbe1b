#!/usr/bin/env bash
# build.sh builds the test-cluster binaries from source into $BIN (the
# repository's git-ignored bin/). Run it through `make testbins`.
#
# Binaries: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl (manifests tests: apply -k, auth can-i), kwok, echo-basic. Versions
# are pinned by the go.mod files beside this script; nothing is downloaded as a
# prebuilt binary.
#
# Reuse, cheapest first:
#   1. $BIN/.testbins-stamp holds the version hash the binaries in $BIN were
#      built for; if it matches, nothing happens.
#   2. A per-user cache outside the clone,
#      ${CAUSEWAY_TESTBINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/causeway/testbins}/<hash>/,
#      is filled once per version and linked or copied into $BIN, so a fresh
#      clone on the same machine does not rebuild.
#   3. Otherwise the binaries are built (about 15-20 minutes on 2 cores the
#      first time; Go's build cache makes later rebuilds fast).
#
# The version hash covers the go.mod/go.sum files, the etcd stub, this
# script and the Go version, so changing a pin rebuilds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${BIN:-$(cd "$HERE/../.." && pwd)/bin}"
GO="${GO:-go}"

K8S_VERSION=v1.37.2
K8S_MAJOR=1
K8S_MINOR=37
NAMES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok echo-basic)

hash="$(
	{
		cd "$HERE"
		cat go.mod go.sum etcd/main.go kwok/go.mod kwok/go.sum echobasic/go.mod echobasic/go.sum build.sh
		"$GO" env GOVERSION GOOS GOARCH
	} | sha256sum | cut -c1-16
)"
cache_root="${CAUSEWAY_TESTBINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/causeway/testbins}"
cache="$cache_root/$hash"
stamp="$BIN/.testbins-stamp"

complete() { # complete DIR: all binaries present and executable
	local n
	for n in "${NAMES[@]}"; do [[ -x "$1/$n" ]] || return 1; done
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$hash" ]] && complete "$BIN"; then
	echo "testbins: $BIN is up to date ($hash)"
	exit 0
fi

mkdir -p "$cache_root" "$BIN"
# One builder per cache at a time; a second `make testbins` waits and reuses.
exec 9>"$cache_root/.lock"
flock 9

if ! complete "$cache"; then
	start=$(date +%s)
	tmp="$(mktemp -d "$cache_root/.build-$hash.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
	ldflags+=" -X k8s.io/component-base/version.gitMajor=$K8S_MAJOR -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
	ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
	echo "testbins: building Kubernetes $K8S_VERSION components and etcd (first build: ~15-20 min on 2 cores)"
	(cd "$HERE" && "$GO" build -ldflags "$ldflags" -o "$tmp/" ./etcd \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubectl)
	echo "testbins: building kwok"
	(cd "$HERE/kwok" && "$GO" build -ldflags "-s -w" -o "$tmp/" sigs.k8s.io/kwok/cmd/kwok)
	echo "testbins: building echo-basic"
	(cd "$HERE/echobasic" && "$GO" build -ldflags "-s -w" -o "$tmp/" sigs.k8s.io/gateway-api/conformance/echo-basic)
	complete "$tmp" || { echo "testbins: build finished but a binary is missing in $tmp" >&2; exit 1; }
	rm -rf "$cache"
	mv "$tmp" "$cache"
	trap - EXIT
	echo "testbins: built in $(($(date +%s) - start))s into $cache"
fi

for n in "${NAMES[@]}"; do
	rm -f "$BIN/$n"
	ln "$cache/$n" "$BIN/$n" 2>/dev/null || cp "$cache/$n" "$BIN/$n"
done
echo "$hash" >"$stamp"
echo "testbins: $BIN ready ($hash)"
