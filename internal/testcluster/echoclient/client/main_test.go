package main

import "testing"

func TestServiceName(t *testing.T) {
	for _, tc := range []struct{ host, svc, ns string }{
		{"echo", "echo", "def"},
		{"echo.mesh", "echo", "mesh"},
		{"echo.mesh.svc", "echo", "mesh"},
		{"echo.mesh.svc.cluster.local", "echo", "mesh"},
		{"echo.mesh.svc.cluster.local.", "echo", "mesh"},
		{"a.b.c", "", ""},
	} {
		svc, ns := serviceName(tc.host, "def")
		if svc != tc.svc || ns != tc.ns {
			t.Errorf("serviceName(%q) = %q, %q; want %q, %q", tc.host, svc, ns, tc.svc, tc.ns)
		}
	}
}
