package up

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one child process in a process group of its own: killing the
// group takes every process it may have started with it.
type proc struct {
	name string // "<cluster> <component>", for errors
	log  string // file holding its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's error, read after done
}

// startProc starts bin with args, its output appended to logPath. The child
// is in its own process group and gets SIGKILL if this process dies
// (Pdeathsig), so an `up` that crashes leaves nothing behind.
func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether p has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// kill sends SIGKILL to p's process group and waits for p.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM to p's group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	p.kill()
}

// tail is the last lines of p's log, for error messages.
func (p *proc) tail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	for i, n := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n == lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// deathError describes p having exited when it should be running.
func (p *proc) deathError() error {
	_, err := p.exited()
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited early (%w); its log %s ends:\n%s", p.name, err, p.log, p.tail(8))
}

// stopAll stops procs concurrently.
func stopAll(procs []*proc, grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range procs {
		if p != nil {
			wg.Go(func() { p.stop(grace) })
		}
	}
	wg.Wait()
}
