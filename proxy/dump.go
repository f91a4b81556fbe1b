package proxy

import (
	"crypto/x509"
	"encoding/pem"
	"sort"
	"time"

	"github.com/causewaymesh/causeway/proxy/config"
	"github.com/causewaymesh/causeway/proxy/lb"
)

// ConfigDump returns the current configuration for /config_dump. Secrets
// appear only as names, certificate identities and expiry: never key
// material.
func (p *Proxy) ConfigDump() any {
	st := p.state.Load()
	s := st.snap
	secrets := make([]secretDump, 0, len(s.Secrets))
	for _, sec := range s.Secrets {
		secrets = append(secrets, dumpSecret(sec))
	}
	sort.Slice(secrets, func(i, j int) bool { return secrets[i].Name < secrets[j].Name })
	return struct {
		Version   string                            `json:"version"`
		Listeners []*config.Listener                `json:"listeners"`
		Routes    map[string]*config.RouteConfig    `json:"routes"`
		Clusters  map[string]*config.Cluster        `json:"clusters"`
		Endpoints map[string]*config.LoadAssignment `json:"endpoints"`
		Secrets   []secretDump                      `json:"secrets"`
	}{s.Version, s.Listeners, s.Routes, s.Clusters, s.Endpoints, secrets}
}

type certDump struct {
	Subject  string    `json:"subject"`
	URIs     []string  `json:"uri_sans,omitempty"`
	DNS      []string  `json:"dns_sans,omitempty"`
	NotAfter time.Time `json:"not_after"`
}

type secretDump struct {
	Name  string     `json:"name"`
	Chain []certDump `json:"certificate_chain,omitempty"`
	Roots []certDump `json:"trusted_ca,omitempty"`
	// TrustDomains: the SPIFFE bundle set, by trust domain.
	TrustDomains map[string][]certDump `json:"trust_domains,omitempty"`
}

func dumpSecret(s *config.Secret) secretDump {
	d := secretDump{Name: s.Name}
	if s.Cert != nil {
		for _, der := range s.Cert.Certificate {
			if c, err := x509.ParseCertificate(der); err == nil {
				d.Chain = append(d.Chain, describeCert(c))
			}
		}
	}
	d.Roots = describePEM(s.RootsPEM)
	for td, pemBytes := range s.TrustDomainsPEM {
		if d.TrustDomains == nil {
			d.TrustDomains = map[string][]certDump{}
		}
		d.TrustDomains[td] = describePEM(pemBytes)
	}
	return d
}

func describePEM(rest []byte) []certDump {
	var out []certDump
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, describeCert(c))
		}
	}
}

func describeCert(c *x509.Certificate) certDump {
	d := certDump{Subject: c.Subject.String(), DNS: c.DNSNames, NotAfter: c.NotAfter}
	for _, u := range c.URIs {
		d.URIs = append(d.URIs, u.String())
	}
	return d
}

// ClustersStatus returns per-cluster, per-endpoint health and locality for
// /clusters, sorted by cluster name.
func (p *Proxy) ClustersStatus() any {
	st := p.state.Load()
	names := make([]string, 0, len(st.upstreams))
	for n := range st.upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]clusterDump, 0, len(names))
	for _, n := range names {
		out = append(out, clusterDump{Name: n, Status: st.upstreams[n].lb.Status()})
	}
	return out
}

type clusterDump struct {
	Name   string           `json:"name"`
	Status lb.ClusterStatus `json:"status"`
}
