package up

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// poll calls cond every 20ms until it is true, it fails, or ctx ends; the
// error says what was awaited.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within the deadline (%w)", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

var readyClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}

func get200(ctx context.Context, url string) bool {
	code, _, _, err := httpGet(ctx, readyClient, url, "")
	return err == nil && code == 200
}

// alive fails when one of procs has exited.
func alive(procs ...*proc) error {
	for _, p := range procs {
		if p == nil {
			continue
		}
		if ok, _ := p.exited(); ok {
			return p.deathError()
		}
	}
	return nil
}

// waitReady waits for the control planes, the sidecars, the federation
// (every import holds its peer's exported endpoints, every bundle fetched)
// and the client reaching every exported service by its clusterset name.
func (f *Federation) waitReady(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, c := range f.top.Clusters {
		wg.Go(func() {
			url := fmt.Sprintf("http://%s:%d/ready", f.net().cpIP(i), portAdmin)
			err := poll(ctx, c.Name+" control plane "+url, func() (bool, error) {
				if err := alive(f.cps[i]); err != nil {
					return false, fmt.Errorf("%w\nfix: is %s:%d-%d free (another `causeway up`)? see the log above", err, f.net().cpIP(i), portXDS, portFederation)
				}
				return get200(ctx, url), nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%w; its log %s ends:\n%s", err, f.cps[i].log, f.cps[i].tail(8)))
				return
			}
			f.say("%-6s control plane ready (%s)", c.Name, time.Since(f.started).Round(10*time.Millisecond))
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return joinErrs(errs)
	}
	if err := f.waitPods(ctx, f.pods); err != nil {
		return err
	}
	if err := f.waitGateways(ctx, nil); err != nil { // gateway.go
		return err
	}
	f.say("all %d sidecars ready, each with its SVID, and %d east-west gateways (%s)", len(f.pods), len(f.gws), time.Since(f.started).Round(10*time.Millisecond))
	if err := f.waitFederation(ctx); err != nil {
		return err
	}
	f.say("federation converged: every cluster imports its peers' exported endpoints (%s)", time.Since(f.started).Round(10*time.Millisecond))
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for _, svc := range f.top.exportedServices() {
		host := f.ClustersetHost(svc)
		var last string
		err := poll(ctx, fmt.Sprintf("%s client (sidecar %s) to reach %s", f.client.Cluster, f.client.AdminURL(), host), func() (bool, error) {
			if err := alive(f.client.sidecar); err != nil {
				return false, err
			}
			code, _, body, err := httpGet(ctx, hc, f.ClientURL(), host)
			last = fmt.Sprint(code, " ", body, err)
			return code == 200, nil
		})
		if err != nil {
			return fmt.Errorf("%w; last answer: %s", err, last)
		}
	}
	return nil
}

// waitPods waits for the pods' sidecars' /ready (config and SVID) and
// their apps' ports.
func (f *Federation) waitPods(ctx context.Context, pods []*Pod) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, p := range pods {
		wg.Go(func() {
			err := poll(ctx, fmt.Sprintf("%s pod %s: sidecar %s/ready", p.Cluster, p.Name, p.AdminURL()), func() (bool, error) {
				if err := alive(p.app, p.sidecar); err != nil {
					return false, err
				}
				return get200(ctx, p.AdminURL()+"/ready"), nil
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%w; its log %s ends:\n%s", err, p.sidecar.log, p.sidecar.tail(8)))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return joinErrs(errs)
}

var importLine = regexp.MustCompile(`^import (\S+) .*state="([^"]*)".* endpoints=(\d+) `)

// waitFederation waits until every control plane's /federation shows each
// peer connected with all of its exported ready endpoints, and every peer
// bundle healthy.
func (f *Federation) waitFederation(ctx context.Context) error {
	f.mu.Lock()
	want := exportedEndpoints(f.top, f.pods)
	f.mu.Unlock()
	for i, c := range f.top.Clusters {
		url := fmt.Sprintf("http://%s:%d/federation", f.net().cpIP(i), portAdmin)
		var last string
		err := poll(ctx, c.Name+" control plane: imports from every peer ("+url+")", func() (bool, error) {
			if err := alive(f.cps[i]); err != nil {
				return false, err
			}
			code, _, body, err := httpGet(ctx, readyClient, url, "")
			if err != nil || code != 200 {
				return false, nil
			}
			last = body
			got := 0
			for line := range strings.SplitSeq(body, "\n") {
				if strings.HasPrefix(line, "bundle ") && !strings.Contains(line, "healthy=true") {
					return false, nil
				}
				m := importLine.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				n, _ := strconv.Atoi(m[3])
				if m[2] != "connected" || n != want[m[1]] {
					return false, nil
				}
				got++
			}
			return got == len(f.top.Clusters)-1, nil
		})
		if err != nil {
			return fmt.Errorf("%w; its status:\n%s", err, last)
		}
	}
	return nil
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return fmt.Errorf("up: %d component(s) not ready:\n%s", len(errs), b.String())
}
