package peerapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// rootPEM is a self-signed certificate, made once.
var rootPEM = func() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"west.local"}},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

func good() *Peer {
	p := &Peer{Spec: PeerSpec{Cluster: "west", TrustDomain: "west.local", Federation: "10.0.0.6:15014",
		BundleEndpoint: &BundleEndpoint{URL: "https://10.0.0.6:15013/", Profile: ProfileHTTPSSPIFFE, SPIFFEID: "spiffe://west.local/causeway/control-plane"},
		TrustBundle:    rootPEM}}
	p.APIVersion, p.Kind, p.Name = APIVersion, Kind, "west"
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Peer)
		field  string // "" : valid
	}{
		{"good", func(*Peer) {}, ""},
		{"export only needs no federation", func(p *Peer) { p.Spec.Direction, p.Spec.Federation = DirectionExport, "" }, ""},
		{"no name", func(p *Peer) { p.Name = "" }, "metadata.name"},
		{"namespaced", func(p *Peer) { p.Namespace = "x" }, "metadata.namespace"},
		{"wrong kind", func(p *Peer) { p.Kind = "Link" }, "kind"},
		{"no cluster", func(p *Peer) { p.Spec.Cluster = "" }, "spec.cluster"},
		{"bad cluster", func(p *Peer) { p.Spec.Cluster = "West_1" }, "spec.cluster"},
		{"bad trust domain", func(p *Peer) { p.Spec.TrustDomain = "spiffe://west.local" }, "spec.trustDomain"},
		{"no federation", func(p *Peer) { p.Spec.Federation = "" }, "spec.federation"},
		{"federation without port", func(p *Peer) { p.Spec.Federation = "10.0.0.6" }, "spec.federation"},
		{"bad direction", func(p *Peer) { p.Spec.Direction = "Sideways" }, "spec.direction"},
		{"http bundle endpoint", func(p *Peer) { p.Spec.BundleEndpoint.URL = "http://x/" }, "spec.bundleEndpoint.url"},
		{"bad profile", func(p *Peer) { p.Spec.BundleEndpoint.Profile = "tls" }, "spec.bundleEndpoint.profile"},
		{"spiffeID of another trust domain", func(p *Peer) { p.Spec.BundleEndpoint.SPIFFEID = "spiffe://east.local/x" }, "spec.bundleEndpoint.spiffeID"},
		{"https_spiffe without bundle", func(p *Peer) { p.Spec.TrustBundle = "" }, "spec.trustBundle"},
		{"bundle without endpoint", func(p *Peer) { p.Spec.BundleEndpoint = nil }, "spec.trustBundle"},
		{"a key in the bundle", func(p *Peer) { p.Spec.TrustBundle = "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n" }, "spec.trustBundle"},
		{"no certificate", func(p *Peer) { p.Spec.TrustBundle = "hello" }, "spec.trustBundle"},
		{"not a certificate", func(p *Peer) {
			p.Spec.TrustBundle = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}, "spec.trustBundle"},
		{"filter on an import-only link", func(p *Peer) {
			p.Spec.Direction, p.Spec.Export = DirectionImport, &ExportFilter{Namespaces: []string{"shop"}}
		}, "spec.export"},
		{"bad filter namespace", func(p *Peer) { p.Spec.Export = &ExportFilter{Namespaces: []string{"Shop"}} }, "spec.export.namespaces[0]"},
		{"duplicate filter service", func(p *Peer) {
			p.Spec.Export = &ExportFilter{Services: []ServiceName{{"shop", "cart"}, {"shop", "cart"}}}
		}, "spec.export.services[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.mutate(p)
			err := p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.field+": ") {
				t.Fatalf("Validate: %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
}

func TestDirections(t *testing.T) {
	for _, tt := range []struct {
		d                Direction
		imports, exports bool
	}{{"", true, true}, {DirectionBoth, true, true}, {DirectionImport, true, false}, {DirectionExport, false, true}} {
		s := PeerSpec{Direction: tt.d}
		if s.Imports() != tt.imports || s.Exports() != tt.exports {
			t.Errorf("%q: imports %t exports %t", tt.d, s.Imports(), s.Exports())
		}
	}
}
