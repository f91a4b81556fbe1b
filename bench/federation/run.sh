#!/usr/bin/env bash
# bench/federation/run.sh: federation between control planes (issue 7), from
# the Go benchmarks of federation/ over real mTLS gRPC on 127.0.0.1: one
# endpoint change from the exporter's model to the importer's callback
# (1,000 services x 10 endpoints), and 256 peer clusters importing from one
# exporter; and end to end in internal/controlplane, 3 whole control planes
# x 1,000 services x 10 endpoints, a change in one cluster's source until an
# xDS client of another ACKed it. Prints a markdown section; with an output file it replaces the
# section "## Federation: propagation and fan-out" there (or appends it).
#   bench/federation/run.sh [docs/benchmarks.md]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${1:-}"
HEAD="## Federation: propagation and fan-out"

# PropagationLatency: b.N is the number of changes; FanOut256: one run;
# FederationPropagation: b.N is the number of changes.
load="$(cut -d' ' -f1-3 /proc/loadavg)"
raw="$(go test -run '^$' -bench 'BenchmarkPropagationLatency' -benchtime "${BENCH_FED_CHANGES:-2000}x" -count 1 -timeout 15m ./federation
	go test -run '^$' -bench 'BenchmarkFanOut256' -benchtime 1x -count 1 -timeout 15m ./federation
	go test -run '^$' -bench 'BenchmarkFederationPropagation' -benchtime "${BENCH_FED_E2E_CHANGES:-100}x" -count 1 -timeout 15m ./internal/controlplane)"
cpu="$(awk -F': ' '/^cpu:/ {print $2; exit}' <<<"$raw" | sed 's/ *$//')"
section="$(
	echo "$HEAD"
	echo
	echo "\`bench/federation/run.sh\` (part of \`make bench\`), $(date -u +%Y-%m-%d), $(nproc) CPUs ($cpu), $(go env GOVERSION)."
	echo "Exporter and importers in one process, each importer on its own mTLS gRPC stream on 127.0.0.1"
	echo "with its own trust domain. PropagationLatency: 1,000 services x 10 endpoints, one endpoint"
	echo "change at a time (2,000 changes), time from the exporter's Update to the importer's OnImports. FanOut256: 256"
	echo "peers import 100 services x 10 endpoints; time until all converged (and the CPU that took,"
	echo "converge-cpu-ms, which the load does not change), heap, then one change."
	echo "FederationPropagation (internal/controlplane), end to end: 3 clusters, each a whole control plane"
	echo "(trust plane, federation, Merger, xDS server, own trust domain), federated both ways, each"
	echo "exporting 1,000 services x 10 endpoints under the same names; one endpoint change at a time"
	echo "(${BENCH_FED_E2E_CHANGES:-100} changes, each 200 ms after the last ACK, so the default 100 ms push debounce never delays"
	echo "one) from cluster a's discovery source until an xDS client on a real ADS stream to cluster b's"
	echo "control plane has ACKed the clusterset load assignment carrying it; heap is the three control"
	echo "planes together after converging; converge-ms is the time for the three to converge at start;"
	echo "the stages at b (p50): a's source to b's importer handing b's Merger the imports (to-import),"
	echo "b's merge until its model is emitted (merge), then debounce, translation, push and ACK (xds);"
	echo "cpu-ms/change is the CPU of the whole process (all three control planes) per change, the number"
	echo "the machine's load does not change."
	p99="$(awk '/^BenchmarkFederationPropagation/ {for (i=3; i<=NF; i++) if ($i=="p99-ms") print $(i-1)}' <<<"$raw")"
	if [ -z "$p99" ]; then
		echo "Target (issue 7): p99 under 300 ms; FederationPropagation did not run."
	elif awk -v p="$p99" 'BEGIN {exit !(p < 300)}'; then
		echo "Target (issue 7): p99 under 300 ms: met in this run ($p99 ms)."
	else
		echo "Target (issue 7): p99 under 300 ms: **not met in this run** ($p99 ms)."
	fi
	echo "Load average at the start: $load (2 cores shared with other builds and tests: the tails show it)."
	echo "The change path is incremental (2026-11-23): merge.Update reuses the merged services whose inputs"
	echo "did not change, the Merger validates only changed services, federation.MergeImports reuses unchanged"
	echo "ones and the exporter encodes only changed services (87 -> 17 ms CPU per change, p99 1.5 s -> 0.1-0.5 s"
	echo "on this loaded machine). What is left per change: the xDS push, ControlPlane.apply's Snapshot.Equal,"
	echo "one copy of the service slice per stage (the model is immutable), and GC; three control planes share"
	echo "the 2 cores here, where each would have its own in production."
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
