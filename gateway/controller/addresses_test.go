package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/causewaymesh/causeway/internal/testcluster"
)

func TestAddressPool(t *testing.T) {
	var assigned atomic.Int32
	p, err := NewAddressPool("127.50.0.0/30", func() { assigned.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	c := types.NamespacedName{Namespace: "ns", Name: "c"}
	d := types.NamespacedName{Namespace: "ns", Name: "d"}
	steps := []struct {
		gw      types.NamespacedName
		want    string
		wantErr bool
	}{
		{a, "127.50.0.1", false},
		{b, "127.50.0.2", false},
		{a, "127.50.0.1", false}, // stable
		{c, "127.50.0.3", false},
		{d, "", true}, // a /30 has three host addresses after the network address
	}
	for i, s := range steps {
		got, err := p.Assign(s.gw)
		if (err != nil) != s.wantErr || (err == nil && got.String() != s.want) {
			t.Fatalf("step %d: Assign(%s) = %v, %v; want %q (error %t)", i, s.gw, got, err, s.want, s.wantErr)
		}
	}
	if n := assigned.Load(); n != 3 {
		t.Errorf("onAssign called %d times, want 3 (once per new address)", n)
	}
	if got := p.Lookup("ns", "b"); got != "127.50.0.2" {
		t.Errorf("Lookup(ns/b) = %q", got)
	}
	if got := p.Lookup("ns", "d"); got != "" {
		t.Errorf("Lookup(ns/d) = %q, want none", got)
	}
	st := p.StatusAddresses(a)
	if len(st) != 1 || st[0].Value != "127.50.0.1" || st[0].Type == nil || *st[0].Type != "IPAddress" {
		t.Errorf("StatusAddresses(a) = %+v", st)
	}
	if st := p.StatusAddresses(d); st != nil {
		t.Errorf("StatusAddresses of an exhausted pool = %+v, want none", st)
	}
	for _, bad := range []string{"127.50.0.0", "nope", "127.50.0.1/32"} {
		if _, err := NewAddressPool(bad, nil); err == nil {
			t.Errorf("NewAddressPool(%q): want an error", bad)
		}
	}
}

func TestStripSecrets(t *testing.T) {
	cert, key := testPair(t)
	for _, tc := range []struct {
		name string
		in   *corev1.Secret
		want map[string][]byte
	}{
		{"good pair: no key material kept", &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}}, nil},
		{"malformed pair: placeholders", &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}},
			map[string][]byte{"tls.crt": {}, "tls.key": {}}},
		{"opaque: dropped", &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("x")}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := strip(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Secret).Data
			if len(got) != len(tc.want) {
				t.Fatalf("data %v, want %v", got, tc.want)
			}
			for k, v := range got {
				if w, ok := tc.want[k]; !ok || len(v) != len(w) {
					t.Fatalf("data %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func testPair(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestTLSSecrets(t *testing.T) {
	testcluster.RequireBinaries(t, false) // a control plane only
	c := testcluster.Start(t, testcluster.Options{SkipCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cert, key := testPair(t)
	changes := make(chan struct{}, 16)
	s := NewTLSSecrets(c.Clientset, func() { changes <- struct{}{} })
	runCtx, stop := context.WithCancel(ctx)
	done, err := s.Run(runCtx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); <-done }()
	secrets := c.Clientset.CoreV1().Secrets("default")
	for _, sec := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "good"}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "opaque"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}},
	} {
		if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-changes:
			case <-ctx.Done():
				t.Fatalf("%s: %v", what, ctx.Err())
			}
		}
	}
	waitFor("the good pair", func() bool {
		c, k, ok := s.Get("default", "good")
		return ok && string(c) == string(cert) && string(k) == string(key)
	})
	for _, name := range []string{"bad", "opaque"} {
		if _, _, ok := s.Get("default", name); ok {
			t.Errorf("Get(default/%s): want none (malformed or not kubernetes.io/tls)", name)
		}
	}
	if err := secrets.Delete(ctx, "good", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the deletion", func() bool { _, _, ok := s.Get("default", "good"); return !ok })
}
