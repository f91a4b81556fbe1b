package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns utime+stime of each pid (from /proc/<pid>/stat), summed.
func cpuSeconds(pids []int) (float64, error) {
	var ticks uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("read cpu time of -pids %d: %w", pid, err)
		}
		t, err := parseStatTicks(b)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		ticks += t
	}
	return float64(ticks) / clockTicks, nil
}

// parseStatTicks returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseStatTicks(b []byte) (uint64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("no ')' closing the command name in %q", b)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name, want at least 13", len(f))
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime %q: %w", f[11], err)
	}
	s, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime %q: %w", f[12], err)
	}
	return u + s, nil
}

// memory is what /proc/<pid>/status says of a process's memory, in KiB.
type memory struct {
	PeakKB uint64 // VmHWM: peak resident set
	AnonKB uint64 // RssAnon now: heap, stacks
	FileKB uint64 // RssFile now: mapped binary and libraries
}

// peakRSS returns the memory of the process with the largest VmHWM among
// pids, and the sum of their VmHWM.
func peakRSS(pids []int) (largest memory, sumKB uint64, err error) {
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return memory{}, 0, fmt.Errorf("read VmHWM of -pids %d: %w", pid, err)
		}
		m, err := parseStatus(b)
		if err != nil {
			return memory{}, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
		}
		sumKB += m.PeakKB
		if m.PeakKB > largest.PeakKB {
			largest = m
		}
	}
	return largest, sumKB, nil
}

func parseStatus(b []byte) (memory, error) {
	var m memory
	fields := []struct {
		key string
		dst *uint64
	}{{"VmHWM:", &m.PeakKB}, {"RssAnon:", &m.AnonKB}, {"RssFile:", &m.FileKB}}
	seenPeak := false
	for line := range strings.SplitSeq(string(b), "\n") {
		for _, fd := range fields {
			rest, ok := strings.CutPrefix(line, fd.key)
			if !ok {
				continue
			}
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return m, fmt.Errorf("line %q: want \"%s <n> kB\"", line, fd.key)
			}
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return m, fmt.Errorf("line %q: %w", line, err)
			}
			*fd.dst = v
			seenPeak = seenPeak || fd.dst == &m.PeakKB
		}
	}
	if !seenPeak {
		return m, fmt.Errorf("no VmHWM line (is it a kernel thread?)")
	}
	return m, nil
}

func parsePids(s string) ([]int, error) {
	var pids []int
	if s == "" {
		return nil, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("-pids %q: %q is not a process id", s, f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}
