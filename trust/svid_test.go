package trust

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestWorkloadID(t *testing.T) {
	tests := []struct {
		name, ns, sa string
		td           spiffeid.TrustDomain
		want         string
		wantErr      string
	}{
		{name: "ok", td: tdA, ns: "default", sa: "web", want: "spiffe://a.test/ns/default/sa/web"},
		{name: "sa with dots and dashes", td: tdA, ns: "kube-system", sa: "my-sa.v2", want: "spiffe://a.test/ns/kube-system/sa/my-sa.v2"},
		{name: "empty td", ns: "a", sa: "b", wantErr: "trust domain is empty"},
		{name: "empty namespace", td: tdA, ns: "", sa: "b", wantErr: `namespace "": is empty`},
		{name: "empty sa", td: tdA, ns: "a", sa: "", wantErr: `service account "": is empty`},
		{name: "uppercase namespace", td: tdA, ns: "Prod", sa: "b", wantErr: `character 'P' at offset 0`},
		{name: "slash in sa", td: tdA, ns: "a", sa: "b/c", wantErr: `character '/' at offset 1`},
		{name: "dot in namespace", td: tdA, ns: "a.b", sa: "c", wantErr: `character '.' at offset 1`},
		{name: "leading dash", td: tdA, ns: "-a", sa: "c", wantErr: `character '-' at offset 0`},
		{name: "double dot in sa", td: tdA, ns: "a", sa: "b..c", wantErr: `character '.' at offset 2`},
		{name: "namespace too long", td: tdA, ns: strings.Repeat("a", 64), sa: "c", wantErr: "is 64 characters long; the limit is 63"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := WorkloadID(tc.td, tc.ns, tc.sa)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id.String() != tc.want {
				t.Fatalf("WorkloadID = %v, %v; want %s", id, err, tc.want)
			}
		})
	}
}

func TestRenewAt(t *testing.T) {
	cert := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(24 * time.Hour)}
	tests := []struct {
		name       string
		cert       *x509.Certificate
		now        time.Time
		wantAt     time.Time
		wantReason string
	}{
		{name: "fresh", cert: cert, now: t0.Add(time.Hour), wantAt: t0.Add(12 * time.Hour), wantReason: RenewReasonHalfLife},
		{name: "just before half", cert: cert, now: t0.Add(12*time.Hour - time.Nanosecond), wantAt: t0.Add(12 * time.Hour), wantReason: RenewReasonHalfLife},
		{name: "at half", cert: cert, now: t0.Add(12 * time.Hour), wantAt: t0.Add(12 * time.Hour), wantReason: RenewReasonPastHalf},
		{name: "past half", cert: cert, now: t0.Add(20 * time.Hour), wantAt: t0.Add(20 * time.Hour), wantReason: RenewReasonPastHalf},
		{name: "expired", cert: cert, now: t0.Add(25 * time.Hour), wantAt: t0.Add(25 * time.Hour), wantReason: RenewReasonExpired},
		{name: "nil", now: t0, wantAt: t0, wantReason: RenewReasonNoCert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at, reason := RenewAt(tc.cert, tc.now)
			if !at.Equal(tc.wantAt) || reason != tc.wantReason {
				t.Fatalf("RenewAt = %v, %q; want %v, %q", at, reason, tc.wantAt, tc.wantReason)
			}
		})
	}
}

func TestBundlePEM(t *testing.T) {
	ca := mustCA(t, tdA, CAOptions{})
	b := ca.Bundle()
	pemBytes, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(pemBytes) != string(ca.BundlePEM()) {
		t.Error("BundlePEM differs from x509bundle Marshal")
	}
	b.RemoveX509Authority(ca.Certificate())
	if ca.Bundle().Empty() {
		t.Error("mutating a returned bundle changed the CA")
	}
}

func BenchmarkSignSVID(b *testing.B) {
	ca, err := NewSelfSignedCA(tdA, CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	id, _ := WorkloadID(tdA, "ns", "sa")
	csr, _ := newCSR(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.SignSVID(csr, id, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenewAt(b *testing.B) {
	cert := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(24 * time.Hour)}
	now := t0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = RenewAt(cert, now)
	}
}
