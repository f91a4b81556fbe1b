package router

import (
	"net/http"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/causewaymesh/causeway/proxy/config"
)

// PickCluster picks one of f's weighted clusters: the cluster whose share
// of [0, total weight) contains rnd % total, clusters taking their shares
// in order. rnd is a random number from the caller (any uint64; a value
// already in [0, total) selects deterministically). Clusters of weight 0
// are never picked, except that a single cluster is always picked whatever
// its weight. It returns nil when f is nil, has no cluster, or all weights
// are zero (the engine then answers 500, as Gateway API asks when no
// backend may be chosen).
func PickCluster(f *config.ForwardAction, rnd uint64) *config.WeightedCluster {
	if f == nil || len(f.Clusters) == 0 {
		return nil
	}
	if len(f.Clusters) == 1 {
		return &f.Clusters[0]
	}
	var total uint64
	for i := range f.Clusters {
		total += uint64(f.Clusters[i].Weight)
	}
	if total == 0 {
		return nil
	}
	x := rnd % total
	for i := range f.Clusters {
		w := uint64(f.Clusters[i].Weight)
		if x < w {
			return &f.Clusters[i]
		}
		x -= w
	}
	return nil // unreachable
}

// HashKey computes the consistent-hash key of r for f's HashPolicy: the
// first policy that yields a value wins (header value, cookie value, or
// the source IP of r.RemoteAddr without its port). ok is false when no
// policy yields a value. A header with several values hashes them joined
// with ",". The hash is xxHash64 (Envoy's choice), stable across processes
// so that proxy replicas agree. It does not allocate.
func HashKey(r *http.Request, f *config.ForwardAction) (key uint64, ok bool) {
	if f == nil {
		return 0, false
	}
	for i := range f.HashPolicy {
		hp := &f.HashPolicy[i]
		switch {
		case hp.Header != "":
			if strings.EqualFold(hp.Header, "host") || hp.Header == ":authority" {
				if r.Host != "" {
					return xxhash.Sum64String(r.Host), true
				}
				continue
			}
			if k, ok := hashHeader(r.Header, hp.Header); ok {
				return k, true
			}
		case hp.Cookie != "":
			if v, ok := cookieValue(r.Header, hp.Cookie); ok {
				return xxhash.Sum64String(v), true
			}
		case hp.SourceIP:
			if ip := hostOnly(r.RemoteAddr); ip != "" {
				return xxhash.Sum64String(ip), true
			}
		}
	}
	return 0, false
}

func hashHeader(h http.Header, name string) (uint64, bool) {
	vs := headerValues(h, name)
	switch len(vs) {
	case 0:
		return 0, false
	case 1:
		return xxhash.Sum64String(vs[0]), true
	}
	var d xxhash.Digest
	d.Reset()
	for i, v := range vs {
		if i > 0 {
			_, _ = d.WriteString(",")
		}
		_, _ = d.WriteString(v)
	}
	return d.Sum64(), true
}

// cookieValue returns the value of the first cookie called name in h's
// Cookie headers, without the optional double quotes, without allocating.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, found := strings.Cut(part, "=")
			if !found || strings.TrimSpace(k) != name {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// headerValues is h.Values(name) without allocating for names up to 64
// bytes: the canonical key is built on the stack.
func headerValues(h http.Header, name string) []string {
	if vs, ok := h[name]; ok {
		return vs
	}
	var buf [64]byte
	if len(name) > len(buf) {
		return h.Values(name)
	}
	k := buf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isTokenByte(c) {
			return nil // textproto leaves such keys as they are: looked up above
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
	return h[string(k)]
}

// isTokenByte reports whether c may appear in a header name (RFC 9110
// token), as textproto.CanonicalMIMEHeaderKey requires.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
