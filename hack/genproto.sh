#!/usr/bin/env bash
# genproto.sh regenerates the committed Go code of Causeway's protobuf APIs,
# and the sidecar's lean xDS messages (proxy/leanxds, by hack/leanxds).
# The output is reproducible byte for byte: the generator versions are pinned
# below (protoc-gen-go at the google.golang.org/protobuf version in go.mod),
# built into bin/, and the protoc version is checked.
#
#   hack/genproto.sh           regenerate
#   hack/genproto.sh --check   regenerate into a scratch dir and fail on drift
#
# Needs protoc 3.21.12 (Debian: apt-get install -y protobuf-compiler).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
GO="${GO:-go}"
PROTOC="${PROTOC:-protoc}"
PROTOC_VERSION="3.21.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.5.1"
MODULE="github.com/causewaymesh/causeway"

# proto files to generate, relative to the repository root.
PROTOS=(
	trust/trustpb/svid.proto
	federation/federationpb/federation.proto
)

cd "$ROOT"

have="$("$PROTOC" --version 2>/dev/null | awk '{print $2}')" || true
if [[ "$have" != "$PROTOC_VERSION" ]]; then
	echo "genproto: need protoc $PROTOC_VERSION, found '${have:-none}'; install it with: apt-get install -y protobuf-compiler" >&2
	exit 1
fi

PROTOBUF_VERSION="$("$GO" list -m -f '{{.Version}}' google.golang.org/protobuf)"
install_tool() { # name, package@version, expected --version output
	local name="$1" pkg="$2" want="$3"
	if [[ ! -x "$BIN/$name" ]] || [[ "$("$BIN/$name" --version 2>/dev/null)" != "$want" ]]; then
		echo "genproto: installing $pkg into $BIN" >&2
		GOBIN="$BIN" "$GO" install "$pkg"
	fi
}
install_tool protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOBUF_VERSION" "protoc-gen-go $PROTOBUF_VERSION"
install_tool protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION" "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"
# protoc-gen-validate has no --version: its build info names the version.
PGV_VERSION="$("$GO" list -m -f '{{.Version}}' github.com/envoyproxy/protoc-gen-validate)"
if [[ "$("$GO" version -m "$BIN/protoc-gen-validate" 2>/dev/null | awk '$1 == "mod" {print $3}')" != "$PGV_VERSION" ]]; then
	echo "genproto: installing github.com/envoyproxy/protoc-gen-validate@$PGV_VERSION into $BIN" >&2
	GOBIN="$BIN" "$GO" install "github.com/envoyproxy/protoc-gen-validate@$PGV_VERSION"
fi

out="$ROOT"
if [[ "${1:-}" == "--check" ]]; then
	out="$(mktemp -d)"
	trap 'rm -rf "$out"' EXIT
fi

"$PROTOC" \
	--plugin=protoc-gen-go="$BIN/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
	-I "$ROOT" \
	--go_out="$out" --go_opt=module="$MODULE" \
	--go-grpc_out="$out" --go-grpc_opt=module="$MODULE" \
	"${PROTOS[@]}"

if [[ "${1:-}" == "--check" ]]; then
	status=0
	"$GO" run ./hack/leanxds -bin "$BIN" -check || status=1
	for p in "${PROTOS[@]}"; do
		base="${p%.proto}"
		for f in "$base.pb.go" "${base}_grpc.pb.go"; do
			if ! cmp -s "$out/$f" "$ROOT/$f"; then
				echo "genproto: $f is out of date; run hack/genproto.sh" >&2
				status=1
			fi
		done
	done
	exit "$status"
fi
"$GO" run ./hack/leanxds -bin "$BIN"
