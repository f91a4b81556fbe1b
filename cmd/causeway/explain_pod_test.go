package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/causewaymesh/causeway/internal/up"
)

func TestPodAdmin(t *testing.T) {
	state := filepath.Join(t.TempDir(), "causeway-up.json")
	b, _ := json.Marshal(up.State{PID: os.Getpid(), WorkDir: "/w", Clusters: []up.StateCluster{
		{Name: "east", Admin: "http://127.10.1.1:15011", Pods: []up.StatePod{{Name: "checkout-0", Zone: "region-1a", Admin: "http://127.20.1.1:15000"}, {Name: "client", Zone: "region-1a", Admin: "http://127.20.1.4:15000"}}},
		{Name: "west", Admin: "http://127.10.2.1:15011", Pods: []up.StatePod{{Name: "checkout-0", Zone: "region-1c", Admin: "http://127.20.2.1:15000"}}},
	}})
	if err := os.WriteFile(state, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pod, want, wantErr string
	}{
		{"client", "http://127.20.1.4:15000", ""},
		{"west/checkout-0", "http://127.20.2.1:15000", ""},
		{"checkout-0", "", "in several clusters (east/checkout-0, west/checkout-0); name one as cluster/name"},
		{"south/checkout-0", "", "no such pod in the running `causeway up`; its pods: east/checkout-0, east/client, west/checkout-0"},
	}
	for _, tt := range tests {
		t.Run(tt.pod, func(t *testing.T) {
			got, err := podAdmin(state, tt.pod)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("podAdmin(%q) = %q, %v; want %q, %q", tt.pod, got, err, tt.want, tt.wantErr)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runExplain([]string{"--pod", "client", "--admin", "127.0.0.1:1", "x"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--pod and --admin: give one") {
		t.Errorf("--pod with --admin: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := runExplain([]string{"--pod", "client", "--state", filepath.Join(t.TempDir(), "none.json"), "x"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "no causeway up found") {
		t.Errorf("--pod without a causeway up: exit %d, %q", code, stderr.String())
	}
}
