package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The simulated clients (the fleet) run in a second process by default, so
// the bench process's CPU, RSS and heap are the control plane's alone. The
// bench re-executes itself with -client-runner ADDR and speaks a line
// protocol over the child's stdin and stdout (-in-process runs the same
// code in a goroutine over pipes):
//
//	parent → fleet   arm K CLUSTER ADDR WAIT_NS   watch for change K
//	                 stats                        report counters
//	fleet → parent   ready                        every client ACKed a full EDS
//	                 error MSG                    setup failed
//	                 armed K AFFECTED             the tracker holds change K
//	                 result K MISSING EXTRA T...  the ACK times of change K
//	                 stats LDS RDS CDS EDS OTHER CPU_NS HWM_BYTES ERRS FIRST_ERR
//
// ACK times are wall-clock Unix nanoseconds (CLOCK_REALTIME, one clock for
// both processes on one host), taken by the client right after it sent
// the ACK; the parent subtracts its own wall-clock time taken just before
// controlplane.Offer. Both sides read the same kernel clock through the
// vDSO, so the difference is exact to the clock's resolution unless the
// clock is stepped during a change (NTP slews, it does not step, on a
// running host).

// fleetStats are the fleet's counters at the end.
type fleetStats struct {
	recvd [5]int64
	cpu   time.Duration
	hwm   uint64
	errs  int
	first string
}

// epoch is the zero of ACK times: a change tracked by the fleet starts at
// it, so each latency it records is an absolute wall-clock time.
var epoch = time.Unix(0, 0) // read-only

// runFleet connects c.clients clients to addr and serves the line protocol
// on in and out until in ends or ctx does.
func runFleet(ctx context.Context, c config, addr string, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wmu sync.Mutex
	say := func(f string, a ...any) {
		wmu.Lock()
		defer wmu.Unlock()
		fmt.Fprintf(out, f+"\n", a...)
	}
	tr := &tracker{}
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	var mu sync.Mutex
	var errs []string
	clients := make([]*client, c.clients)
	var conns []*grpc.ClientConn
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	zones := []string{"z1", "z2", "z3"}
	sem := make(chan struct{}, max(c.connectParallel, 1))
	for i := range clients {
		cl := newClient(i, clusterName, "ns-00", zones[i%3])
		clients[i] = cl
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if !c.clientBDP {
			opts = append(opts, grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(16<<20))
		}
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			say("error client %d: dial %s: %v", i, addr, err)
			return fmt.Errorf("client %d: dial %s: %w", i, addr, err)
		}
		conns = append(conns, cc)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		bg.Go(func() {
			runClient := cl.run
			if c.delta {
				runClient = cl.runDelta
			}
			if err := runClient(ctx, cc, tr); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		})
		bg.Go(func() { // the connect limiter: released when this client is ready
			select {
			case <-cl.ready:
			case <-ctx.Done():
			}
			<-sem
		})
	}
	setupCtx, setupCancel := context.WithTimeout(ctx, c.setupTimeout)
	defer setupCancel()
	readyN := 0
	for _, cl := range clients {
		select {
		case <-cl.ready:
			readyN++
		case <-setupCtx.Done():
			mu.Lock()
			first := firstN(errs, 3)
			mu.Unlock()
			msg := fmt.Sprintf("setup: %d of %d clients ACKed a complete EDS within %s (raise -setup-timeout or lower -clients); client errors: %v", readyN, c.clients, c.setupTimeout, first)
			say("error %s", strings.ReplaceAll(msg, "\n", " "))
			return errors.New(msg)
		}
	}
	say("ready")

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	affected := make([]bool, c.clients)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "arm":
			if len(f) != 5 {
				return fmt.Errorf("fleet: bad command %q", sc.Text())
			}
			k, _ := strconv.Atoi(f[1])
			waitNS, _ := strconv.ParseInt(f[4], 10, 64)
			n := 0
			for i, cl := range clients {
				affected[i] = cl.subscribed(f[2])
				if affected[i] {
					n++
				}
			}
			ch := newChange(k, f[2], f[3], epoch, affected)
			tr.set(ch)
			say("armed %d %d", k, n)
			bg.Go(func() {
				t := time.NewTimer(time.Duration(waitNS))
				defer t.Stop()
				select {
				case <-ch.done:
				case <-t.C:
				case <-ctx.Done():
				}
				_, lat, missing := ch.result()
				ch.mu.Lock()
				extra := ch.extra
				ch.mu.Unlock()
				var b strings.Builder
				fmt.Fprintf(&b, "result %d %d %d", k, missing, extra)
				for _, l := range lat {
					b.WriteByte(' ')
					b.WriteString(strconv.FormatInt(int64(l), 10))
				}
				say("%s", b.String())
			})
		case "stats":
			tr.set(nil)
			var s fleetStats
			for _, cl := range clients {
				for t := range cl.recvd {
					s.recvd[t] += cl.recvd[t].Load()
				}
			}
			mu.Lock()
			s.errs = len(errs)
			if len(errs) > 0 {
				s.first = strings.ReplaceAll(errs[0], "\n", " ")
			}
			mu.Unlock()
			say("stats %d %d %d %d %d %d %d %d %s", s.recvd[0], s.recvd[1], s.recvd[2], s.recvd[3], s.recvd[4], int64(cpuTime()), vmHWM(), s.errs, s.first)
		default:
			return fmt.Errorf("fleet: unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}

// fleet is the parent's handle on the client fleet.
type fleet struct {
	w      io.Writer
	lines  chan []string // fields of each line the fleet wrote
	wait   func() error  // ends the fleet (after in is closed) and reports its error
	closeW func() error
}

// startFleet runs the fleet against addr: in a child process (the bench's
// own executable with -client-runner) unless c.inProcess.
func startFleet(ctx context.Context, c config, addr string, logw io.Writer) (*fleet, error) {
	f := &fleet{lines: make(chan []string, 16)}
	var r io.Reader
	if c.inProcess {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := runFleet(ctx, c, addr, inR, outW)
			inR.CloseWithError(io.EOF)
			outW.CloseWithError(io.EOF)
			done <- err
		}()
		f.w, r, f.closeW = inW, outR, inW.Close
		f.wait = func() error { return <-done }
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("fleet: find this executable to re-run it as the client runner: %w", err)
		}
		args := []string{"-client-runner", addr, "-clients", strconv.Itoa(c.clients), "-connect-parallel", strconv.Itoa(c.connectParallel),
			"-setup-timeout", c.setupTimeout.String()}
		if c.delta {
			args = append(args, "-delta")
		}
		args = append(args, "-client-bdp="+strconv.FormatBool(c.clientBDP))
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = logw
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("fleet: stdin pipe: %w", err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("fleet: stdout pipe: %w", err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("fleet: start %s: %w", exe, err)
		}
		f.w, r, f.closeW = in, out, in.Close
		f.wait = cmd.Wait
	}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f.lines <- strings.Fields(sc.Text())
		}
	}()
	return f, nil
}

// next is the next line whose first field is want; an "error" line, the
// fleet's end or the timeout is an error.
func (f *fleet) next(ctx context.Context, want string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				return nil, fmt.Errorf("fleet: ended while waiting for %q", want)
			}
			if len(l) > 0 && l[0] == "error" {
				return nil, fmt.Errorf("fleet: %s", strings.Join(l[1:], " "))
			}
			if len(l) > 0 && l[0] == want {
				return l, nil
			}
		case <-t.C:
			return nil, fmt.Errorf("fleet: no %q within %s", want, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *fleet) send(format string, a ...any) error {
	_, err := fmt.Fprintf(f.w, format+"\n", a...)
	return err
}

// stop closes the fleet's input and waits for it; the lines are drained.
func (f *fleet) stop() error {
	f.closeW()
	go func() {
		for range f.lines {
		}
	}()
	return f.wait()
}

func parseStats(l []string) (fleetStats, error) {
	var s fleetStats
	if len(l) < 9 {
		return s, fmt.Errorf("fleet: short stats line %q", strings.Join(l, " "))
	}
	for i := range 5 {
		s.recvd[i], _ = strconv.ParseInt(l[1+i], 10, 64)
	}
	cpu, _ := strconv.ParseInt(l[6], 10, 64)
	s.cpu = time.Duration(cpu)
	s.hwm, _ = strconv.ParseUint(l[7], 10, 64)
	s.errs, _ = strconv.Atoi(l[8])
	s.first = strings.Join(l[9:], " ")
	return s, nil
}
