package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrBinaryMissing is wrapped by errors about a binary that `make testbins`
// has not built (yet).
var ErrBinaryMissing = errors.New("test binary missing")

// ErrPortInUse is wrapped by errors about a port another process holds.
var ErrPortInUse = errors.New("port in use")

// ErrNotReady is wrapped by errors about a component that exited or did not
// become ready in time.
var ErrNotReady = errors.New("component not ready")

// process is one child process with its output in a log file.
type process struct {
	name    string // component name, e.g. "kube-apiserver"
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // exit error; read only after done is closed
	logFile *os.File
}

// binPath returns the path of the named binary in dir, or an error that says
// how to build it.
func binPath(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found in %s (run `make testbins` in the repository root, or set $CAUSEWAY_TESTBINS to a directory that has it): %v", ErrBinaryMissing, name, dir, err)
	}
	if fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not executable (run `make testbins` again)", ErrBinaryMissing, p)
	}
	return p, nil
}

// startProcess starts argv with stdout and stderr appended to logPath. The
// process gets SIGKILL if this process dies, and runs in its own process
// group so that stop can signal its children too.
func startProcess(name, logPath string, argv []string, env []string) (*process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: lf}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process to exit.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Reap anything left in the group (children of the child).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// exitError describes how the process exited, with the tail of its log, and
// classifies "address already in use" as ErrPortInUse.
func (p *process) exitError() error {
	tail := logTail(p.logPath, 25)
	if strings.Contains(tail, "address already in use") {
		return fmt.Errorf("%s exited (%v): %w: another process took one of its ports; log %s ends:\n%s", p.name, p.err, ErrPortInUse, p.logPath, tail)
	}
	return fmt.Errorf("%s exited (%v): %w; log %s ends:\n%s", p.name, p.err, ErrNotReady, p.logPath, tail)
}

// waitReady polls ready every interval until it returns true, the process
// exits, or timeout passes. Errors from ready are remembered and reported.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			if p.exited() {
				return p.exitError()
			}
			return fmt.Errorf("%s did not become ready within %v (last check: %v): %w; log %s ends:\n%s",
				p.name, timeout, last, ErrNotReady, p.logPath, logTail(p.logPath, 25))
		case <-tick.C:
		}
	}
}

// logTail returns the last n lines of the file at path (at most 64 KiB).
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}

// processGroup stops processes in reverse start order.
type processGroup struct {
	mu    sync.Mutex
	procs []*process
}

func (g *processGroup) add(p *process) {
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
}

func (g *processGroup) remove(p *process) {
	g.mu.Lock()
	g.procs = slices.DeleteFunc(g.procs, func(q *process) bool { return q == p })
	g.mu.Unlock()
}

func (g *processGroup) stopAll(grace time.Duration) {
	g.mu.Lock()
	procs := g.procs
	g.procs = nil
	g.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(grace)
	}
}
