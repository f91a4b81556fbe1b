package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/trust"
	"github.com/causewaymesh/causeway/trust/issuer"
)

// exportedCart is a service north exports.
const exportedCart = `apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cart-1, namespace: shop, labels: {kubernetes.io/service-name: cart}}
addressType: IPv4
endpoints: [{addresses: [10.1.0.1], conditions: {ready: true}}]
ports: [{name: http, port: 8080}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`

// startLinkPlane starts a real `causeway control-plane` with --mtls and a
// federation listener but no --peer: its links come from its folder.
func startLinkPlane(t *testing.T, dir, name, ip string) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name + ".local")
	for _, d := range []string{"folder", "ca"} {
		if err := os.MkdirAll(filepath.Join(dir, name, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := trust.NewSelfSignedCA(td, trust.CAOptions{Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(filepath.Join(dir, name, "ca")); err != nil {
		t.Fatal(err)
	}
	if err := issuer.WriteTokenFile(filepath.Join(dir, name, "tokens.txt"), nil); err != nil {
		t.Fatal(err)
	}
	args := []string{"control-plane", "--source", "folder", "--dir", filepath.Join(dir, name, "folder"), "--cluster", name,
		"--network", "flat", "--poll", "50ms", "--xds", ip + ":15010", "--admin", ip + ":15011", "--mtls",
		"--ca-dir", filepath.Join(dir, name, "ca"), "--tokens-file", filepath.Join(dir, name, "tokens.txt"),
		"--svid-listen", ip + ":15012", "--bundle-listen", ip + ":15013", "--federation-listen", ip + ":15014"}
	startProcess(t, filepath.Join(dir, name+".log"), args...) // mcs_test.go
}

func adminGet(ip, path string) (string, error) {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + ip + ":15011" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func statusOf(ip string) (controlplane.StatusReport, error) {
	var rep controlplane.StatusReport
	s, err := adminGet(ip, "/status")
	if err != nil {
		return rep, err
	}
	return rep, json.Unmarshal([]byte(s), &rep)
}

// eventually polls cond every 50ms until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-tick.C:
		}
	}
}

// TestLinkRoundTrip: what `causeway link` prints is exactly what a peer
// applies. north's link (direction Import) dropped into south's folder
// and south's link (direction Export) into north's: a one-directional
// link, south imports north's exports and north imports nothing. The
// Peers' status is on /federation. Then an invalid Peer is reported with
// its file and field, and the good link keeps serving. Loopback
// 127.71.2.0/24.
func TestLinkRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	const north, south = "127.71.2.1", "127.71.2.2"
	startLinkPlane(t, dir, "north", north)
	startLinkPlane(t, dir, "south", south)
	if err := os.WriteFile(filepath.Join(dir, "north", "folder", "cart.yaml"), []byte(exportedCart), 0o644); err != nil {
		t.Fatal(err)
	}
	link := func(ip, direction string) []byte {
		var stdout, stderr bytes.Buffer
		var code int
		eventually(t, ctx, "causeway link --admin "+ip, func() error {
			stdout.Reset()
			stderr.Reset()
			if code = runLink([]string{"--admin", ip + ":15011", "--direction", direction}, &stdout, &stderr); code != 0 {
				return fmt.Errorf("exit %d: %s", code, stderr.String())
			}
			return nil
		})
		// It is a valid Peer as it stands.
		var p peerapi.Peer
		if err := yaml.UnmarshalStrict(stdout.Bytes(), &p); err != nil {
			t.Fatalf("link of %s does not decode as a Peer: %v\n%s", ip, err, stdout.String())
		}
		if err := p.Validate(); err != nil || string(p.Spec.Direction) != direction {
			t.Fatalf("link of %s: %v (direction %q)\n%s", ip, err, p.Spec.Direction, stdout.String())
		}
		return stdout.Bytes()
	}
	northLink, southLink := link(north, "Import"), link(south, "Export")
	if err := os.WriteFile(filepath.Join(dir, "south", "folder", "north-link.yaml"), northLink, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "north", "folder", "south-link.yaml"), southLink, 0o644); err != nil {
		t.Fatal(err)
	}

	eventually(t, ctx, "south imports north's cart", func() error {
		rep, err := statusOf(south)
		if err != nil {
			return err
		}
		if len(rep.Links) != 1 || !rep.Links[0].Healthy || rep.Links[0].Peer != "north" || rep.Links[0].Services != 1 {
			return fmt.Errorf("south's links %+v (problems %v)", rep.Links, rep.Problems)
		}
		if !slices.ContainsFunc(rep.Imported, func(s controlplane.ServiceStatus) bool { return strings.Contains(fmt.Sprint(s), "cart") }) {
			return fmt.Errorf("south's imports %+v", rep.Imported)
		}
		return nil
	})
	eventually(t, ctx, "the links' status on /federation", func() error {
		s, err := adminGet(south, "/federation")
		if err != nil {
			return err
		}
		if !strings.Contains(s, "peer north Accepted=True Connected=True Stale=False BundleHealthy=True") || !strings.Contains(s, "imported=1 imported-endpoints=1") {
			return fmt.Errorf("south's /federation:\n%s", s)
		}
		n, err := adminGet(north, "/federation")
		if err != nil {
			return err
		}
		if !strings.Contains(n, "peer south Accepted=True Connected=Unknown") || !strings.Contains(n, "exported=1 imported=0") {
			return fmt.Errorf("north's /federation:\n%s", n)
		}
		return nil
	})
	rep, err := statusOf(north)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Links) != 0 || len(rep.Imported) != 0 {
		t.Fatalf("north imports although its link to south is Export only: links %+v, imported %+v", rep.Links, rep.Imported)
	}

	// A bad Peer is a problem naming its file, object and field; the
	// good link keeps serving.
	bad := strings.Replace(string(northLink), "name: north\n", "name: bad\n", 1)
	bad = strings.Replace(bad, "trustDomain: north.local", "trustDomain: Not_A_Domain!", 1)
	if err := os.WriteFile(filepath.Join(dir, "south", "folder", "bad-link.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the bad Peer is reported", func() error {
		p, err := adminGet(south, "/problems")
		if err != nil {
			return err
		}
		if !strings.Contains(p, "bad-link.yaml: document 1: Peer bad: spec.trustDomain:") {
			return fmt.Errorf("south's /problems:\n%s", p)
		}
		return nil
	})
	// A second, valid Peer for the same cluster is a conflict naming both.
	dup := strings.Replace(string(northLink), "name: north\n", "name: north-again\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "south", "folder", "dup-link.yaml"), []byte(dup), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the conflicting Peer is reported", func() error {
		p, err := adminGet(south, "/problems")
		if err != nil {
			return err
		}
		if !strings.Contains(p, `Peer north-again (in `) || !strings.Contains(p, `spec.cluster: "north" is already linked by Peer north (in `) {
			return fmt.Errorf("south's /problems:\n%s", p)
		}
		return nil
	})
	if rep, err := statusOf(south); err != nil || len(rep.Links) != 1 || !rep.Links[0].Healthy || rep.Links[0].Connects != 1 {
		t.Fatalf("bad Peers disturbed the good link: %+v (%v)", rep.Links, err)
	}
}
