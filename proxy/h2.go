package proxy

// h2Conns is how many HTTP/2 connections an HTTP/2 cluster keeps to each
// endpoint, used in turn by successive requests.
//
// Between two Causeway proxies requests are multiplexed on HTTP/2, so a
// busy pair of sidecars shares a few long-lived connections instead of one
// connection per concurrent request: no handshake burst when traffic
// shifts to another endpoint, and far fewer connections against the
// circuit breaker. More than one, because an endpoint behind an east-west
// gateway is the gateway's address standing for every pod of a locality:
// the gateway forwards each connection (TLS passthrough) to one pod, so a
// single connection would send the whole locality's share to one pod, and
// lose it all at once when that pod dies. A few connections spread it;
// each one's streams fail over together (the request-level retries on
// reset move them), and the next request redials through the gateway.
const h2Conns = 4
