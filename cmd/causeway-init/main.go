// Command causeway-init installs a pod's traffic capture: the nat-table
// rules that send the pod's TCP (and, with --capture-dns, its DNS) to the
// causeway-proxy sidecar. It runs once, as the pod's init container, in the
// pod's network namespace, with CAP_NET_ADMIN and CAP_NET_RAW.
//
//	causeway-init                         # default ports, UID 1337
//	causeway-init --capture-dns --exclude-inbound-ports 15021
//	causeway-init --dry-run               # print the rules, change nothing
//	causeway-init --remove                # delete the CAUSEWAY_* chains
//
// The same program is `causeway-proxy init` (proxy/capture/initcmd), which
// the injected init container runs.
//
// Exit codes: 0 done (or nothing to do), 1 iptables refused the change,
// 2 bad flags, 3 iptables is not installed.
package main

import (
	"io"
	"os"

	"github.com/causewaymesh/causeway/proxy/capture/initcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes (initcmd's): the same from `causeway-proxy init`.
const (
	exitOK         = initcmd.ExitOK
	exitFailed     = initcmd.ExitFailed
	exitUsage      = initcmd.ExitUsage
	exitNoIptables = initcmd.ExitNoIptables
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is proxy/capture/initcmd, shared with `causeway-proxy init`.
func run(args []string, stdout, stderr io.Writer) int {
	return initcmd.Run("causeway-init", version, args, stdout, stderr)
}
