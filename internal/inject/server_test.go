package inject

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/causewaymesh/causeway/trust"
)

// serverAddr is this package's fixed loopback address for Server tests
// (block 127.240.0.0/16).
const serverAddr = "127.240.9.2:15017"

func TestWebhookConfigFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(WebhookConfig) string
		wantErr string // from Validate
	}{
		{
			name: "defaults, injector off",
			check: func(c WebhookConfig) string {
				if c.Listen != "" || !slices.Equal(c.Hosts, []string{DefaultServingHost}) || c.WebhookConfiguration != DefaultWebhookConfiguration || c.CertTTL != DefaultCertTTL {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			},
		},
		{
			name: "as manifests/base passes them",
			args: []string{"--injector-listen=:15017", "--injector-proxy-image=causeway-proxy:dev", "--injector-control-plane=causeway.causeway-system.svc:15010",
				"--injector-hosts=a.svc, 127.240.9.2", "--injector-proxy-cpu-limit=2", "--injector-cert-ttl=1h", "--injector-webhook-config="},
			check: func(c WebhookConfig) string {
				if c.Listen != ":15017" || c.Inject.Image != "causeway-proxy:dev" || c.Inject.ControlPlane != "causeway.causeway-system.svc:15010" ||
					!slices.Equal(c.Hosts, []string{"a.svc", "127.240.9.2"}) || c.Inject.Resources.Limits.Cpu().String() != "2" || c.CertTTL != time.Hour || c.WebhookConfiguration != "" {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			},
		},
		{name: "no image", args: []string{"--injector-listen=:15017", "--injector-control-plane=cp:15010"}, wantErr: "(--injector-proxy-image) is empty"},
		{name: "bad listen", args: []string{"--injector-listen=15017", "--injector-proxy-image=p", "--injector-control-plane=cp:15010"}, wantErr: `--injector-listen "15017"`},
		{name: "no hosts", args: []string{"--injector-listen=:15017", "--injector-hosts=", "--injector-proxy-image=p", "--injector-control-plane=cp:15010"}, wantErr: "--injector-hosts is empty"},
		{name: "short ttl", args: []string{"--injector-listen=:15017", "--injector-cert-ttl=1m", "--injector-proxy-image=p", "--injector-control-plane=cp:15010"}, wantErr: "--injector-cert-ttl 1m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultWebhookConfig()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.Flags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if fs.Lookup("injector-cluster") != nil || fs.Lookup("injector-network") != nil {
				t.Error("--injector-cluster/--injector-network registered; the control plane's --cluster and --network are used")
			}
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.check != nil {
				if msg := tc.check(c); msg != "" {
					t.Errorf("config after %q: %s", tc.args, msg)
				}
			}
		})
	}
}

// rootSource is a root CA that a test can rotate.
type rootSource struct {
	mu   sync.Mutex
	cert *x509.Certificate
	key  crypto.Signer
}

func (r *rootSource) rotate(t *testing.T, validity time.Duration) *x509.Certificate {
	t.Helper()
	ca, err := trust.NewSelfSignedCA(spiffeid.RequireTrustDomainFromString("inject.test"), trust.CAOptions{Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	cert, key, err := trust.LoadCAFiles(dir+"/"+trust.CACertFile, dir+"/"+trust.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cert, r.key = cert, key
	return cert
}

func (r *rootSource) get() (*x509.Certificate, crypto.Signer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, r.key, nil
}

type recordedEvent struct {
	regarding         corev1.ObjectReference
	typ, reason, note string
}

type eventLog struct {
	mu sync.Mutex
	ev []recordedEvent
}

func (l *eventLog) Eventf(regarding, _ runtime.Object, eventtype, reason, _ string, note string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, recordedEvent{*regarding.(*corev1.ObjectReference), eventtype, reason, fmt.Sprintf(note, args...)})
}

// TestServer serves over TLS on loopback: a client that trusts CABundle
// gets an injected pod back; a rotated root shows up in CABundle next to
// the old one until the old one expires.
func TestServer(t *testing.T) {
	roots := &rootSource{}
	first := roots.rotate(t, 2*time.Hour)
	// The clock is read by the server's renewal goroutine too.
	var nowNs atomic.Int64
	nowNs.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNs.Load()) }
	now := clock()
	cfg := DefaultWebhookConfig()
	cfg.Listen, cfg.Hosts, cfg.Inject = serverAddr, []string{"127.240.9.2", DefaultServingHost}, testConfig()
	s, err := NewServer(ServerOptions{Config: cfg, Root: roots.get, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	post := func(serverName string) (*admissionv1.AdmissionResponse, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.CABundle())
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+s.Addr()+WebhookPath,
			bytes.NewReader(review(admissionv1.Create, "Pod", "shop", podJSON(t, "metadata: {name: web}\nspec: {containers: [{name: web, image: web:1}]}"))))
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		return out.Response, nil
	}
	for _, name := range []string{"127.240.9.2", DefaultServingHost} {
		resp, err := post(name)
		if err != nil {
			t.Fatalf("POST as %s: %v", name, err)
		}
		if !resp.Allowed || resp.PatchType == nil || len(resp.Patch) == 0 {
			t.Errorf("as %s: allowed %v, patch %s; want the injection patch", name, resp.Allowed, resp.Patch)
		}
	}
	if _, err := post("other.svc"); err == nil {
		t.Error("a name not in --injector-hosts verified")
	}

	// Rotation: the next certificate is signed by the new root; both
	// roots are in the bundle until the old one expires.
	second := roots.rotate(t, 24*time.Hour)
	if err := s.renew(); err != nil {
		t.Fatal(err)
	}
	if got, want := string(s.CABundle()), string(trust.CertsPEM([]*x509.Certificate{first, second})); got != want {
		t.Error("CABundle after rotation: want both roots, the old one first")
	}
	if _, err := post(DefaultServingHost); err != nil {
		t.Errorf("POST after rotation: %v", err)
	}
	if err := s.cert.Load().Leaf.CheckSignatureFrom(second); err != nil {
		t.Errorf("renewed certificate not signed by the new root: %v", err)
	}
	if at := s.renewAt(); at.Before(now.Add(15*time.Hour)) || at.After(now.Add(17*time.Hour)) {
		t.Errorf("renewAt %v, want two thirds into 24h", at.Sub(now))
	}
	nowNs.Add(int64(3 * time.Hour)) // the first root has expired
	if err := s.renew(); err != nil {
		t.Fatal(err)
	}
	if got, want := string(s.CABundle()), string(trust.CertsPEM([]*x509.Certificate{second})); got != want {
		t.Error("CABundle still holds the expired root")
	}
}

func TestNewServerErrors(t *testing.T) {
	cfg := DefaultWebhookConfig()
	cfg.Listen, cfg.Inject = serverAddr, testConfig()
	for _, tc := range []struct {
		name string
		o    ServerOptions
		want string
	}{
		{"no listen", ServerOptions{Config: DefaultWebhookConfig()}, "Config.Listen is empty"},
		{"no root", ServerOptions{Config: cfg}, "Root is nil"},
		{"root fails", ServerOptions{Config: cfg, Root: func() (*x509.Certificate, crypto.Signer, error) {
			return nil, nil, fmt.Errorf("secret causeway-system/causeway-ca: forbidden")
		}}, "reading the root CA for the webhook's serving certificate: secret causeway-system/causeway-ca: forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServer(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewServer: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestHandlerEvents: a pod the injector refuses gets a Warning Event on
// its controller, else itself, else its namespace; skips record none.
func TestHandlerEvents(t *testing.T) {
	clash := "spec: {containers: [{name: app, image: a, ports: [{containerPort: 15001}]}]}"
	tests := []struct {
		name          string
		pod           string
		wantRegarding string // kind/name, "" for no event
	}{
		{"controller", "metadata: {generateName: web-1-, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: u1, controller: true}]}\n" + clash, "ReplicaSet/web-1"},
		{"named pod", "metadata: {name: clash}\n" + clash, "Pod/clash"},
		{"generateName only", "metadata: {generateName: clash-}\n" + clash, "Namespace/shop"},
		{"injected: no event", "metadata: {name: fine}\nspec: {containers: [{name: app, image: a}]}", ""},
		{"opted out: no event", "metadata: {name: out, annotations: {causeway.dev/inject: \"false\"}}\n" + clash, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &eventLog{}
			h, err := NewHandler(testConfig(), HandlerOptions{Namespaces: namespaces, Events: log})
			if err != nil {
				t.Fatal(err)
			}
			resp := serve(t, h, http.MethodPost, review(admissionv1.Create, "Pod", "shop", podJSON(t, tc.pod)))
			if !resp.Allowed {
				t.Fatal("denied")
			}
			if tc.wantRegarding == "" {
				if len(log.ev) != 0 {
					t.Errorf("events %+v, want none", log.ev)
				}
				return
			}
			if len(log.ev) != 1 {
				t.Fatalf("events %+v, want one", log.ev)
			}
			e := log.ev[0]
			if got := e.regarding.Kind + "/" + e.regarding.Name; got != tc.wantRegarding || e.regarding.Namespace != "shop" {
				t.Errorf("event regarding %s in %q, want %s in shop", got, e.regarding.Namespace, tc.wantRegarding)
			}
			if e.typ != corev1.EventTypeWarning || e.reason != EventReasonNotInjected || !strings.Contains(e.note, "15001") || !strings.Contains(e.note, "admitted without the Causeway sidecar") {
				t.Errorf("event %+v", e)
			}
			if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "15001") {
				t.Errorf("warnings %q", resp.Warnings)
			}
		})
	}
}
