#!/usr/bin/env bash
# bench/trust/run.sh: SVID issuance rate and mTLS handshake cost (issue 5),
# from the Go benchmarks of trust/issuer over real gRPC/TLS on 127.0.0.1.
# Prints a markdown section; with an output file it replaces the section
# "## Trust: SVID issuance and mTLS handshakes" there (or appends it).
#   bench/trust/run.sh [docs/benchmarks.md]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${1:-}"
BENCHTIME="${BENCH_TRUST_TIME:-2s}"
HEAD="## Trust: SVID issuance and mTLS handshakes"

raw="$(go test -run '^$' -bench 'BenchmarkSign|BenchmarkClientFetch|BenchmarkMTLSHandshake' \
	-benchmem -benchtime "$BENCHTIME" -count 1 ./trust/issuer)"
cpu="$(awk -F': ' '/^cpu:/ {print $2; exit}' <<<"$raw" | sed 's/ *$//')"
section="$(
	echo "$HEAD"
	echo
	echo "\`bench/trust/run.sh\` (part of \`make bench\`), $(date -u +%Y-%m-%d), $(nproc) CPUs ($cpu), $(go env GOVERSION)."
	echo "Real gRPC with TLS 1.3 and ECDSA P-256 on 127.0.0.1; client and server in one process, so"
	echo "CPU per operation (process CPU time / ops) covers both sides. Benchtime $BENCHTIME."
	echo
	echo "| benchmark | what | wall per op | rate | CPU per op | B/op | allocs/op |"
	echo "|---|---|---|---|---|---|---|"
	awk '
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		ns=""; cpu=""; bop=""; al=""
		for (i=3; i<=NF; i++) {
			if ($(i+1)=="ns/op") ns=$i
			if ($(i+1)=="cpu-ns/op") cpu=$i
			if ($(i+1)=="B/op") bop=$i
			if ($(i+1)=="allocs/op") al=$i
		}
		what="?"
		if (name ~ /Sign\/serial/) what="one Sign RPC (CSR check, sign, chain), one caller"
		if (name ~ /Sign\/parallel/) what="Sign RPCs, callers in parallel"
		if (name ~ /ClientFetch/) what="workload side: new key, CSR, Sign, verify"
		if (name ~ /Handshake\/pipe/) what="mTLS handshake, both sides, in memory"
		if (name ~ /Handshake\/tcp/) what="mTLS handshake, both sides, TCP loopback"
		printf "| %s | %s | %.0f µs | %.0f /s | %.0f µs | %s | %s |\n", name, what, ns/1000, 1e9/ns, cpu/1000, bop, al
	}' <<<"$raw"
)"
echo "$section"
if [ -n "$OUT" ]; then
	. bench/section.sh
	replace_section "$OUT" "$HEAD" "$section"
fi
