// Package echoclient is the `client` command of the Gateway API conformance
// suite's mesh tests, for the harness (internal/testcluster). The suite
// (sigs.k8s.io/gateway-api/conformance/utils/echo) execs, in a mesh pod's
// container "echo",
//
//	client <scheme>://<host>[:port]<path> [--method=M] [-H name:value]... [--count=N]
//
// and parses stdout with echo.ParseResponse: "Field=value" lines
// (StatusCode, ResponseHeader=Name:value, and from the server's side
// Hostname, RequestHeader=Name:value, Method, Proto, URL, Host), one block
// per request separated by a blank line. The suite's image is Istio's echo
// app; the harness's mesh pods run echo-basic instead, whose JSON answer
// this package turns into those lines.
//
// Run is the whole command with its resolver and transport injected; the
// main package (./client) adds the pod's network namespace and the
// service-name resolution against the apiserver. Run is safe for
// concurrent use; it holds no state between calls.
package echoclient
