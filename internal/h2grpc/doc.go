// Package h2grpc is a gRPC client over net/http's HTTP/2 transport, for the
// sidecar: its ADS stream, its SVID requests and the gRPC health checks of
// the workload it stands beside.
//
// The sidecar already links net/http's HTTP/2 client (it proxies HTTP/2).
// grpc-go's client brings a second HTTP/2 stack, name resolvers, load
// balancers and channelz: without them the sidecar is 0.8 MB smaller and
// peaks about 0.4 MB lower (docs/benchmarks.md). Envoy makes the same
// choice: its "envoy_grpc" client runs on Envoy's own HTTP/2 codec. A
// ClientConn implements grpc.ClientConnInterface, so generated clients
// (trustpb, grpc_health_v1) run on it unchanged, and the errors are gRPC
// statuses (status.Code works on them).
//
// What it does: unary and streaming calls with protobuf messages (no
// compression), the grpc-timeout header from the context's deadline,
// outgoing metadata from the context (metadata.AppendToOutgoingContext),
// and status from the trailers. What it does not: call options (they are
// refused, but for generated code's grpc.StaticMethod), name resolution beyond net/http's (one host:port, resolved by
// the dialer on each new connection), load balancing, retries, keepalive
// pings. Connections are made on first use and re-made after failures by
// net/http; a stream that fails is not retried, as in grpc-go.
//
// A ClientConn is safe for concurrent use. A stream follows grpc-go's
// rules: one goroutine may send while another receives.
package h2grpc
