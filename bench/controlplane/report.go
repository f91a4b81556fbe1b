package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

const sectionTitle = "## Control plane convergence"

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func mib(b uint64) string       { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}

// markdown is the section for docs/benchmarks.md.
func (r *result) markdown(c config) string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("%s\n\n", sectionTitle)
	mode, flagDelta := "SotW", ""
	if c.delta {
		mode, flagDelta = "delta", " -delta"
	}
	if c.inProcess {
		flagDelta += " -in-process"
	}
	if c.clientBDP {
		flagDelta += " -client-bdp"
	}
	clock := "Offer → last affected ACK"
	if c.source == sourceKubernetes {
		flagDelta = " -source kubernetes" + flagDelta
		clock = "EndpointSlice Update call → last affected ACK"
	}
	p("Command: `go run ./bench/controlplane -services %d -endpoints-per-service %d -clients %d -changes %d -debounce %s -gap %s%s`  \n",
		c.services, c.eps, c.clients, c.changes, c.debounce, c.gap, flagDelta)
	p("Machine: %s, %d CPUs (GOMAXPROCS %d), %s, %s, %s.\n\n", cpuModel(), r.nproc, r.gomaxprocs, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("| | |\n|---|---|\n")
	p("| model | %d services × %d endpoints = %d endpoints |\n", c.services, c.eps, c.services*c.eps)
	p("| clients | %d (gRPC ADS on 127.0.0.1, one connection each, %s) |\n", c.clients, mode)
	if c.source == sourceKubernetes {
		p("| source | kube-apiserver + etcd (internal/testcluster, %s), informers (discovery.Kubernetes) → Merger → control plane |\n", "Kubernetes "+testclusterVersion)
		p("| setup (cluster start %s, Services and EndpointSlices created %s, model complete, connect + first full EDS ACKed by all) | %s, bench process CPU %s |\n",
			r.kubeStart.Round(time.Millisecond), r.kubeCreate.Round(time.Millisecond), r.setup.Round(time.Millisecond), r.setupCPU.Round(time.Millisecond))
	} else {
		p("| setup (connect + first full EDS ACKed by all) | %s, process CPU %s |\n", r.setup.Round(time.Millisecond), r.setupCPU.Round(time.Millisecond))
	}
	p("| changes converged / timed out / not run (-max-duration) | %d / %d / %d |\n", len(r.converged), r.timeouts, r.skipped)
	p("| convergence p50 / p99 / max (%s) | %s / %s / %s |\n", clock,
		ms(percentile(r.converged, 50)), ms(percentile(r.converged, 99)), ms(percentile(r.converged, 100)))
	if c.source == sourceKubernetes {
		p("| of which: Update call returned / new model out of the Merger (to the control plane's debounce), p50 / p99 | %s / %s; %s / %s |\n",
			ms(percentile(r.updated, 50)), ms(percentile(r.updated, 99)), ms(percentile(r.emitted, 50)), ms(percentile(r.emitted, 99)))
	}
	p("| per-client ACK p50 / p99 (%d ACKs) | %s / %s |\n", len(r.acks), ms(percentile(r.acks, 50)), ms(percentile(r.acks, 99)))
	p("| affected clients per change | %.0f |\n", float64(r.affected)/float64(max(c.changes-r.skipped, 1)))
	p("| node pushes during the changes (lds/rds/cds/eds) | %.0f / %.0f / %.0f / %.0f |\n", r.pushes["lds"], r.pushes["rds"], r.pushes["cds"], r.pushes["eds"])
	p("| responses received by clients during the changes (lds/rds/cds/eds) | %d / %d / %d / %d |\n", r.recvd[0], r.recvd[1], r.recvd[2], r.recvd[3])
	perChange := time.Duration(0)
	if n := c.changes - r.skipped; n > 0 {
		perChange = r.chgCPU / time.Duration(n)
	}
	who := "control plane alone (clients in a second process)"
	if c.inProcess {
		who = "control plane and clients (-in-process)"
	}
	if c.source == sourceKubernetes {
		who = strings.Replace(who, "control plane alone", "bench process: control plane, informers, client-go writes", 1)
	}
	p("| CPU during the changes, %s | %s (%s per change) |\n", who, r.chgCPU.Round(time.Millisecond), perChange.Round(100*time.Microsecond))
	p("| per change, %s: system calls, context switches, Go allocations | %s |\n", who, r.cnt0.perChange(r.cnt1, c.changes-r.skipped))
	p("| peak RSS (VmHWM) / peak live heap / live heap after GC, %s | %s / %s / %s |\n", who, mib(r.peakRSS), mib(r.peakHeap), mib(r.heapAfter))
	if !c.inProcess {
		fleetPer := time.Duration(0)
		if n := c.changes - r.skipped; n > 0 {
			fleetPer = r.fleetCPU / time.Duration(n)
		}
		p("| the clients' process: CPU during the changes / peak RSS | %s (%s per change) / %s |\n", r.fleetCPU.Round(time.Millisecond), fleetPer.Round(100*time.Microsecond), mib(r.fleetHWM))
	}
	if c.source == sourceKubernetes {
		n := time.Duration(max(c.changes-r.skipped, 1))
		p("| kube-apiserver / etcd: CPU during the changes / peak RSS | %s (%s per change) / %s; %s (%s per change) / %s |\n",
			r.kubeCPU["kube-apiserver"].Round(time.Millisecond), (r.kubeCPU["kube-apiserver"] / n).Round(100*time.Microsecond), mib(r.kubeHWM["kube-apiserver"]),
			r.kubeCPU["etcd"].Round(time.Millisecond), (r.kubeCPU["etcd"] / n).Round(100*time.Microsecond), mib(r.kubeHWM["etcd"]))
	}
	if len(r.clientErrs) > 0 || r.extraAcks > 0 {
		p("| client errors / unexpected ACKs | %d / %d: %s |\n", len(r.clientErrs), r.extraAcks, strings.Join(firstN(r.clientErrs, 2), "; "))
	}
	p("\n")
	return b.String()
}

// writeSection replaces the control-plane section of the file at path (from
// its heading to the next "## " heading or the end) or appends it.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	s := string(old)
	if i := strings.Index(s, sectionTitle+"\n"); i >= 0 {
		rest := s[i+len(sectionTitle)+1:]
		end := len(s)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(sectionTitle) + 1 + j + 1
		}
		s = s[:i] + section + s[end:]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
