package testcluster

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MemoryRSS returns the summed resident set size, in bytes, of the
// cluster's component processes and real pods (0 for processes that are
// gone). It reads /proc, so it is Linux-only.
func (c *Cluster) MemoryRSS() uint64 {
	var total uint64
	c.procs.mu.Lock()
	for _, p := range c.procs.procs {
		total += rss(p)
	}
	c.procs.mu.Unlock()
	if c.pods != nil {
		c.pods.mu.Lock()
		for _, rp := range c.pods.running {
			total += rss(rp.proc)
		}
		c.pods.mu.Unlock()
	}
	return total
}

func rss(p *process) uint64 {
	if p.exited() {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
