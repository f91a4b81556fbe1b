#!/usr/bin/env bash
# bench/federation/run.sh: federation between control planes (issue 7), from
# the Go benchmarks of federation/ over real mTLS gRPC on 127.0.0.1: one
# endpoint change from the exporter's model to the importer's callback
# (1,000 services x 10 endpoints), and 256 peer clusters importing from one
# exporter. Prints a markdown section; with an output file it replaces the
# section "## Federation: propagation and fan-out" there (or appends it).
#   bench/federation/run.sh [docs/benchmarks.md]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${1:-}"
HEAD="## Federation: propagation and fan-out"

# PropagationLatency: b.N is the number of changes; FanOut256: one run.
raw="$(go test -run '^$' -bench 'BenchmarkPropagationLatency' -benchtime "${BENCH_FED_CHANGES:-2000}x" -count 1 -timeout 15m ./federation
	go test -run '^$' -bench 'BenchmarkFanOut256' -benchtime 1x -count 1 -timeout 15m ./federation)"
cpu="$(awk -F': ' '/^cpu:/ {print $2; exit}' <<<"$raw" | sed 's/ *$//')"
section="$(
	echo "$HEAD"
	echo
	echo "\`bench/federation/run.sh\` (part of \`make bench\`), $(date -u +%Y-%m-%d), $(nproc) CPUs ($cpu), $(go env GOVERSION)."
	echo "Exporter and importers in one process, each importer on its own mTLS gRPC stream on 127.0.0.1"
	echo "with its own trust domain. PropagationLatency: 1,000 services x 10 endpoints, one endpoint"
	echo "change at a time (2,000 changes), time from the exporter's Update to the importer's OnImports. FanOut256: 256"
	echo "peers import 100 services x 10 endpoints; time until all converged, heap, then one change."
	echo
	echo "| benchmark | results |"
	echo "|---|---|"
	awk '
	/^Benchmark/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		out=""
		for (i=3; i<NF; i+=2) {
			if ($(i+1)=="ns/op" || $(i+1)=="B/op" || $(i+1)=="allocs/op") continue
			out = out (out=="" ? "" : ", ") $i " " $(i+1)
		}
		printf "| %s | %s |\n", name, out
	}' <<<"$raw"
)"
echo "$section"
if [ -n "$OUT" ]; then
	. bench/section.sh
	replace_section "$OUT" "$HEAD" "$section"
fi
