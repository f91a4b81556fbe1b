package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation"
	"github.com/causewaymesh/causeway/trust"
)

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in   string
		want peerSpec
		err  string
	}{
		{in: "cluster=west,trust-domain=west.local,federation=10.0.0.1:15014,bundle=https://10.0.0.1:15013/,bundle-file=/etc/west.pem",
			want: peerSpec{Cluster: "west", TrustDomain: "west.local", Federation: "10.0.0.1:15014", Bundle: "https://10.0.0.1:15013/", BundleFile: "/etc/west.pem"}},
		{in: "cluster=west, trust-domain=west.local", want: peerSpec{Cluster: "west", TrustDomain: "west.local"}},
		{in: "trust-domain=west.local", err: "cluster: required"},
		{in: "cluster=west", err: "trust-domain: required"},
		{in: "cluster=west,trust-domain=West_Local", err: `trust-domain "West_Local"`},
		{in: "cluster=west,trust-domain=west.local,federation=west", err: `federation "west": want the peer's federation endpoint host:port`},
		{in: "cluster=west,trust-domain=west.local,bundle=http://x/", err: `bundle "http://x/": want the peer's SPIFFE bundle endpoint, an https:// URL`},
		{in: "cluster=west,trust-domain=west.local,port=1", err: `unknown key "port"`},
		{in: "cluster=west,cluster=east,trust-domain=west.local", err: "cluster: given twice"},
		{in: "cluster,trust-domain=west.local", err: `"cluster": want key=value`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePeer(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--peer") {
					t.Fatalf("parsePeer: %v, want an error naming --peer and containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parsePeer = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestControlPlaneFederationFlags(t *testing.T) {
	const peer = "--peer=cluster=west,trust-domain=west.local,federation=127.0.0.1:15014,bundle=https://127.0.0.1:15013/"
	base := []string{"--cluster", "east", "--dir", "/tmp/x"}
	mtls := []string{"--mtls", "--ca-dir", "/tmp/ca", "--tokens-file", "/tmp/tokens"}
	tests := []struct {
		name string
		args []string
		err  string // "" valid
	}{
		{"federation with mtls", append(append(append([]string{}, base...), mtls...), "--federation-listen", "127.0.0.1:15014", peer), ""},
		{"import only", append(append(append([]string{}, base...), mtls...), peer), ""},
		{"listen without mtls", append(append([]string{}, base...), "--federation-listen", "127.0.0.1:15014", peer), "--federation-listen: requires --mtls"},
		{"peer without mtls", append(append([]string{}, base...), peer), "--peer: requires --mtls"},
		{"listen without peers", append(append(append([]string{}, base...), mtls...), "--federation-listen", "127.0.0.1:15014"), ""}, // links may come from Peer objects
		{"peer without bundle", append(append(append([]string{}, base...), mtls...), "--peer", "cluster=west,trust-domain=west.local"), "--peer cluster=west: bundle: required"},
		{"peer of the same trust domain", append(append(append([]string{}, base...), mtls...), "--peer", "cluster=west,trust-domain=east.local,federation=127.0.0.1:1"), ""},
		{"negative staleness", append(append(append([]string{}, base...), mtls...), peer, "--staleness", "-1s"), "--staleness -1s"},
		{"gateway controller on a folder", append(append([]string{}, base...), "--gateway-controller"), "--gateway-controller: only with --source kubernetes"},
		{"gateway controller on kubernetes", []string{"--cluster", "east", "--source", "kubernetes", "--gateway-controller"}, ""},
		{"east-west gateway advertised", append(append(append([]string{}, base...), mtls...), "--federation-listen", "127.0.0.1:15014", peer, "--eastwest-address", "127.40.1.1:15443"), ""},
		{"east-west address without a port", append(append(append([]string{}, base...), mtls...), "--federation-listen", "127.0.0.1:15014", peer, "--eastwest-address", "127.40.1.1"), `--eastwest-address "127.40.1.1": want the gateway's ip:port`},
		{"east-west address without an exporter", append(append(append([]string{}, base...), mtls...), peer, "--eastwest-address", "127.40.1.1:15443"), "--eastwest-address: only with --federation-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c controlPlaneConfig
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.flags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("validate: %v, want %q", err, tt.err)
			}
		})
	}
	var c controlPlaneConfig
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.flags(fs)
	if c.Staleness != federation.DefaultStalenessWindow {
		t.Errorf("--staleness defaults to %s, want federation.DefaultStalenessWindow %s", c.Staleness, federation.DefaultStalenessWindow)
	}
}

func TestFederationPeersLoadsTheBundleFile(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("west.local")
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	peers, err := federationPeers([]peerSpec{{Cluster: "west", TrustDomain: "west.local", Bundle: "https://127.0.0.1:1/", BundleFile: filepath.Join(dir, trust.CACertFile)}})
	if err != nil {
		t.Fatal(err)
	}
	if b := peers[0].Bootstrap; b == nil || b.TrustDomain() != td || len(b.X509Authorities()) != 1 {
		t.Fatalf("bootstrap bundle %v, want west.local's root", b)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := federationPeers([]peerSpec{{Cluster: "west", TrustDomain: "west.local", BundleFile: bad}}); err == nil || !strings.Contains(err.Error(), "--peer cluster=west: bundle-file") {
		t.Fatalf("a bad bundle file: %v", err)
	}
}
