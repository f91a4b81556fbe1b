// Package testcluster starts real Kubernetes control planes on this machine,
// for tests and for developers: etcd and kube-apiserver, and when pods are
// wanted kube-controller-manager, kube-scheduler and kwok (simulated nodes
// and pods). Several clusters can run at once, in one process or in many.
//
// # What it owns
//
// A Cluster owns every process it starts, a scratch directory (certificates,
// etcd data, component logs, kubeconfigs) and, for "real pods", one Linux
// network namespace and one veth pair per pod. Close (or the t.Cleanup that
// Start registers) stops all processes, deletes every namespace and link, and
// removes the directory; the directory is kept, and its path logged, when
// the test failed. Processes also receive SIGKILL if the test binary dies
// (Pdeathsig). Namespaces left behind by a process killed with SIGKILL are
// swept the next time their slot is taken, or by Sweep.
//
// # Addresses
//
// Every component listens on 127.0.0.1, on ports picked free at start. Each
// cluster holds a slot (0..MaxSlots-1) through an flock on a file under
// os.TempDir()/causeway-testcluster, released when the holder exits for any
// reason. The slot fixes the cluster's address ranges, so concurrent test
// binaries never overlap:
//
//	pods      198.18.<16*slot>.0/20 (one /24 per node, allocated by kube-controller-manager)
//	services  198.19.<16*slot>.0/20
//
// Real pods' IPs are the ones kwok assigned; they live on the pod side of a
// veth pair inside the pod's namespace, with a /32 route on the host whose
// source address is the link-local 169.254.1.1. No packet leaves the machine.
// Forwarding is on for those host veths only, so pods reach each other.
// RealPod.Containers runs a pod's init containers and native sidecars too,
// and Cluster.HostIP is a host address the pods reach (realcontainers.go).
//
// # pods/exec
//
// With RealPods, kwok runs exec'd commands on the host for pods that have a
// kwok Exec object; Cluster.StartPodExec keeps one per running real pod,
// whose env names the pod's network namespace (podexec.go). The command
// must enter it itself (internal/testcluster/echoclient/client does).
//
// # Binaries
//
// The binaries come from `make testbins` (hack/testbins), built from source
// into the repository's bin/. Options.BinDir or $CAUSEWAY_TESTBINS overrides
// the directory. A missing binary is an error that names the make target.
//
// # Concurrency
//
// Start and New may be called from many goroutines and processes at once.
// A Cluster's methods are safe for concurrent use. The real-pod runner is one
// goroutine per cluster fed by a pod informer; its callbacks only enqueue.
package testcluster
