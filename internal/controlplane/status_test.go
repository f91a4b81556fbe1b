package controlplane

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestStatusOfAFederatedPair: east and west federated in one process; west
// exports cart. East's /status (over HTTP) shows the link connected, west's
// bundle refreshed and healthy, cart imported from west; west's shows its
// exporter and cart exported.
func TestStatusOfAFederatedPair(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	east := newFedCluster(t, "east")
	west := newFedCluster(t, "west")
	write(t, west.dir, "nodes.yaml", nodesYAML)
	write(t, west.dir, "cart.yaml", slice("cart", "cart", 18080, "z2", true)+`---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: cart, namespace: shop}
`)
	write(t, east.dir, "nodes.yaml", nodesYAML)
	write(t, east.dir, "web.yaml", webService)
	east.run(t, ctx, west, 0)
	west.run(t, ctx, east, 0)

	srv := httptest.NewServer(east.cp.StatusHandler(StatusSources{TrustDomain: "east.local", Federation: east.fed, Merger: east.merger}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() StatusReport {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/status", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var r StatusReport
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var r StatusReport
	waitUntil(t, 30*time.Second, "east's status to show cart imported over a connected link", func() bool {
		r = get()
		return len(r.Links) == 1 && r.Links[0].Healthy && len(r.Imported) == 1 && len(r.Trust) == 1 && r.Trust[0].Refreshes > 0
	})
	if r.Cluster != "east" || r.TrustDomain != "east.local" || !r.Ready {
		t.Errorf("cluster %q trust domain %q ready %t, want east, east.local, true", r.Cluster, r.TrustDomain, r.Ready)
	}
	if l := r.Links[0]; l.Peer != "west" || l.State != "connected" || l.Services != 1 || l.Endpoints != 1 || l.LastSync.IsZero() {
		t.Errorf("link %+v, want west connected with 1 service and 1 endpoint", l)
	}
	if tr := r.Trust[0]; tr.TrustDomain != "west.local" || !tr.Healthy || tr.Profile != "https_spiffe" || tr.Expiry.IsZero() || tr.LastRefresh.IsZero() {
		t.Errorf("trust %+v, want west.local healthy over https_spiffe with an expiry", tr)
	}
	if s := r.Imported[0]; s.Namespace != "shop" || s.Name != "cart" || len(s.Clusters) != 1 || s.Clusters[0] != "west" || s.Ready != 1 {
		t.Errorf("imported %+v, want shop/cart from west, 1 ready", s)
	}
	if r.Export == nil || r.Export.Listen != east.fedLn.Addr().String() {
		t.Errorf("export %+v, want the listener %s", r.Export, east.fedLn.Addr())
	}

	ws := west.cp.Status(StatusSources{Federation: west.fed})
	if ws.TrustDomain != "west.local" || len(ws.Exported) != 1 || ws.Exported[0].Name != "cart" || ws.Exported[0].Endpoints != 1 {
		t.Errorf("west: trust domain %q exported %+v, want west.local (from the model) and cart with 1 endpoint", ws.TrustDomain, ws.Exported)
	}
	if ws.Export == nil || ws.Export.Revision == 0 {
		t.Errorf("west export %+v, want a revision", ws.Export)
	}
}
