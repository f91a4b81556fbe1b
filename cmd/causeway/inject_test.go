package main

import (
	"bytes"
	"strings"
	"testing"
)

const injectInput = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {color: blue}   # comments survive in untouched documents
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {causeway.dev/inject: "true"}
    spec:
      containers: [{name: web, image: web:1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  template:
    metadata:
      labels: {app: batch}
      annotations: {causeway.dev/inject: "false"}
    spec:
      containers: [{name: batch, image: batch:1}]
`

func TestInjectCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runInject(injectArgs, strings.NewReader(injectInput), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	docs := strings.Split(out.String(), "\n---\n")
	if len(docs) != 3 {
		t.Fatalf("%d documents out, want 3:\n%s", len(docs), out.String())
	}
	if !strings.HasPrefix(out.String(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {color: blue}   # comments survive") {
		t.Errorf("the ConfigMap was not passed through byte for byte:\n%s", docs[0])
	}
	if !strings.Contains(docs[1], "causeway-proxy") || !strings.Contains(docs[1], "causeway-init") {
		t.Errorf("the annotated Deployment was not injected:\n%s", docs[1])
	}
	// What a real node needs, from the flags: SVID issuer, trust domain
	// and bundle, capture; the locality comes from the control plane.
	for _, want := range []string{"--svid-issuer=causeway.causeway-system.svc:15012", "--trust-domain=corp.example",
		"--trust-bundle=$(CAUSEWAY_TRUST_BUNDLE)", "--capture\n", "--capture-dns", "name: causeway-trust-bundle"} {
		if !strings.Contains(docs[1], want) {
			t.Errorf("the injected Deployment lacks %q:\n%s", want, docs[1])
		}
	}
	if strings.Contains(docs[1], "--locality") {
		t.Errorf("the injected Deployment sets --locality:\n%s", docs[1])
	}
	if strings.Contains(docs[2], "causeway-proxy") {
		t.Errorf("the Deployment that opts out was injected:\n%s", docs[2])
	}
	if !strings.Contains(errOut.String(), "Deployment shop/batch: not injected") {
		t.Errorf("stderr does not say why batch was left alone: %q", errOut.String())
	}

	// Injecting the output again changes nothing.
	var again bytes.Buffer
	if code := runInject(injectArgs, strings.NewReader(out.String()), &again, &errOut); code != 0 || again.String() != out.String() {
		t.Errorf("re-injection changed the output (exit %d)", code)
	}
	if code := runInject(nil, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-f is required") {
		t.Errorf("no -f: exit %d, %q", code, errOut.String())
	}
	// The trust domain defaults to <cluster>.local, else it is required.
	out.Reset()
	errOut.Reset()
	if code := runInject(append(injectArgs[:len(injectArgs)-1:len(injectArgs)-1], "--cluster=east"), strings.NewReader(injectInput), &out, &errOut); code != 0 || !strings.Contains(out.String(), "--trust-domain=east.local") {
		t.Errorf("--cluster east: exit %d, want --trust-domain=east.local: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := runInject(injectArgs[:len(injectArgs)-1], strings.NewReader(injectInput), &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "Config.TrustDomain (--trust-domain) is empty") {
		t.Errorf("neither --trust-domain nor --cluster: exit %d, %q", code, errOut.String())
	}
}

var injectArgs = []string{"-f", "-", "--proxy-image", "causeway/proxy:dev", "--control-plane", "causeway.causeway-system:15010", "--trust-domain=corp.example"}
