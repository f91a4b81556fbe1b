package testcluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// MaxSlots is how many clusters can run at once on one machine: the pod and
// service ranges are cut into this many /20s.
const MaxSlots = 16

// slot is a machine-wide reservation of one cluster's address ranges, held
// through an flock that the kernel releases when the holder exits.
type slot struct {
	index int
	file  *os.File
}

func lockDir() string { return filepath.Join(os.TempDir(), "causeway-testcluster") }

// acquireSlot takes the first free slot. If want >= 0 only that slot is tried.
func acquireSlot(want int) (*slot, error) {
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create slot lock directory: %w", err)
	}
	lo, hi := 0, MaxSlots
	if want >= 0 {
		if want >= MaxSlots {
			return nil, fmt.Errorf("Options.Slot %d out of range [0,%d)", want, MaxSlots)
		}
		lo, hi = want, want+1
	}
	for i := lo; i < hi; i++ {
		s, err := tryLockSlot(i)
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s, nil
		}
	}
	if want >= 0 {
		return nil, fmt.Errorf("slot %d is held by another running cluster (see %s)", want, dir)
	}
	return nil, fmt.Errorf("all %d cluster slots are in use by running clusters (see %s); stop some or run fewer at once", MaxSlots, dir)
}

// tryLockSlot returns nil, nil if slot i is held by someone else.
func tryLockSlot(i int) (*slot, error) {
	p := filepath.Join(lockDir(), "slot-"+strconv.Itoa(i)+".lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open slot lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &slot{index: i, file: f}, nil
}

func (s *slot) release() {
	if s != nil && s.file != nil {
		s.file.Close() // releases the flock
		s.file = nil
	}
}

// PodCIDR returns the pod range of slot i: 198.18.<16*i>.0/20.
func podCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(16 * i), 0}), 20)
}

// serviceCIDR returns the service range of slot i: 198.19.<16*i>.0/20.
func serviceCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(16 * i), 0}), 20)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// component that gets it may lose a race with another process; that shows
// as ErrPortInUse from the component's exit.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkPortFree returns ErrPortInUse if port on 127.0.0.1 cannot be bound.
func checkPortFree(port int, what string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%s port 127.0.0.1:%d: %w (%v); pick another port or leave it 0 for a free one", what, port, ErrPortInUse, err)
	}
	return l.Close()
}
