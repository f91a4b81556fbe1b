// Package bench holds the data-plane benchmark that `make bench` runs
// (bench/run.sh). It owns no library code: this package only carries the
// test that keeps the Causeway sidecar bootstraps in bootstrap/ valid Envoy
// v3 YAML.
//
// The pieces:
//
//   - backend/: the upstream, a net/http server (HTTP/1.1 and h2c) with a
//     fixed small body.
//   - loadgen/: the load generator: open loop at a fixed rate with latency
//     measured from each request's intended send time (corrected for
//     coordinated omission), and closed loop for maximum throughput; it also
//     samples the CPU time and peak RSS of the processes under test.
//   - gofloor/: the "Go floor" row, the least an HTTP/1.1 proxy written in
//     Go does (forward the head, copy back a Content-Length response) under
//     the sidecar's runtime tuning: what Go costs before Causeway's own work.
//   - report/: turns the loadgen results into the markdown table of
//     docs/benchmarks.md.
//   - bootstrap/: the causeway-proxy bootstraps, templated on ports.
//   - run.sh: builds everything, starts each target on 127.0.0.1, loads it,
//     and kills every process it started on exit.
//
// Benchmarks report; they do not pass or fail CI, and CI does not run them.
package bench
