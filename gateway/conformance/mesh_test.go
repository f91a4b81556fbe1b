package conformance_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/causewaymesh/causeway/internal/testcluster"
)

// The MESH-HTTP profile. The suite's mesh pods (image echo-advanced, in
// gateway-conformance-mesh and -mesh-consumer) run as real pods, each a
// shell that does what an injected pod's containers would: causeway-init
// installs the capture rules, `causeway-proxy sidecar --capture` runs as
// UID 1337 fed by the test's control plane (ADS on the cluster's HostIP,
// which pods reach), and echo-basic serves 8080 in place of Istio's echo
// app. The suite execs `client` in those pods (pods/exec through kwok's
// Exec objects, testcluster.StartPodExec): internal/testcluster/echoclient,
// built here and put first in the PATH kwok inherits.

// meshImagePrefix is the suite's mesh pods' image.
const meshImagePrefix = "registry.k8s.io/gateway-api/echo-advanced"

// meshPodScript is the command of a mesh pod: $1 causeway-init, $2
// causeway-proxy, $3 echo-basic, $4 a file holding the ADS address
// (written once the cluster's HostIP is known, before any pod starts).
const meshPodScript = `set -e
"$1" --proxy-uid 1337
XDS=$(cat "$4")
setpriv --reuid=1337 --regid=1337 --clear-groups -- "$2" sidecar --capture --capture-dns-port 0 \
  --xds "$XDS" --admin 127.0.0.1:15000 --node-id "$POD_NAME.$POD_NAMESPACE" \
  --namespace "$POD_NAMESPACE" --workload default --cluster ` + clusterName + ` --locality region-0/a \
  --inbound-ip "$POD_IP" --inbound-ports 8080=127.0.0.1:8080 --access-log - --drain-timeout 1s --runtime-sysmon-tuning=false &
HTTP_PORT=8080 H2C_PORT=3001 NAMESPACE="$POD_NAMESPACE" exec "$3"
`

// meshBinaries builds causeway-init and the echo client (as "client")
// into a directory every UID can read, prepends that directory to PATH
// for kwok (testcluster.Start must come after), and returns the
// RealPod that runs the mesh pods with proxyBin as their sidecar, and the
// file to write the ADS address in.
func meshBinaries(t *testing.T, proxyBin string) (testcluster.RealPod, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(proxyBin), 0o755); err != nil {
		t.Fatal(err)
	}
	for out, pkg := range map[string]string{
		"causeway-init": "github.com/causewaymesh/causeway/cmd/causeway-init",
		"client":        "github.com/causewaymesh/causeway/internal/testcluster/echoclient/client",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	binDir := os.Getenv("CAUSEWAY_TESTBINS")
	if binDir == "" {
		var err error
		if binDir, err = filepath.Abs("../../bin"); err != nil {
			t.Fatal(err)
		}
	}
	xdsFile := filepath.Join(dir, "xds-address")
	return testcluster.RealPod{
		ImagePrefix: meshImagePrefix,
		Command: []string{"sh", "-c", meshPodScript, "mesh-pod",
			filepath.Join(dir, "causeway-init"), proxyBin, filepath.Join(binDir, "echo-basic"), xdsFile},
	}, xdsFile
}

// startMesh writes the ADS address the mesh pods' sidecars dial (the
// cluster's HostIP, which pods reach; the control plane listens there) and
// makes pods/exec work in real pods until ctx ends.
func startMesh(ctx context.Context, t *testing.T, c *testcluster.Cluster, xdsFile string) (xds string) {
	t.Helper()
	xds = net.JoinHostPort(c.HostIP().String(), "15010")
	if err := os.WriteFile(xdsFile, []byte(xds), 0o644); err != nil {
		t.Fatal(err)
	}
	stop, err := c.StartPodExec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return xds
}
