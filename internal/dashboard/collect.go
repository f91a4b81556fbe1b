package dashboard

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/causewaymesh/causeway/internal/controlplane"
)

// Cluster is one control plane to show.
type Cluster struct {
	Name string
	// Region and Zones, when known (causeway up's topology); otherwise
	// they are read off the cluster's own endpoints.
	Region string
	Zones  []string
	// Admin is the control plane's admin URL (http://host:port).
	Admin string
}

// Target is one sidecar whose metrics are scraped.
type Target struct {
	Cluster, Zone, Pod string
	// URL is its Prometheus endpoint (http://<admin>/stats/prometheus).
	URL string
}

// Options configure a Collector.
type Options struct {
	Clusters []Cluster
	// Targets lists the sidecars to scrape at each collection (nil: none).
	Targets func() []Target
	// Client fetches everything (default: 2s timeout, no proxy).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Window is the span rates are measured over (default 5s).
	Window time.Duration
	// MinInterval: a State younger than this is served again (default 500ms).
	MinInterval time.Duration
}

// State is what the page shows, served as JSON. Every list is sorted.
type State struct {
	Time     time.Time      `json:"time"`
	Clusters []ClusterState `json:"clusters"`
	Services []ServiceState `json:"services"`
	Links    []LinkState    `json:"links"`
	Trust    []TrustState   `json:"trust"`
	Flows    []Flow         `json:"flows"`
	Pods     []PodState     `json:"pods"`
	// Window is the span of the rates, in seconds (0 until two scrapes).
	Window float64 `json:"window"`
}

// ClusterState is one control plane.
type ClusterState struct {
	Name        string   `json:"name"`
	Region      string   `json:"region"`
	Zones       []string `json:"zones"`
	Admin       string   `json:"admin"`
	TrustDomain string   `json:"trust_domain,omitempty"`
	Reachable   bool     `json:"reachable"`
	Ready       bool     `json:"ready"`
	Error       string   `json:"error,omitempty"`
	Services    int      `json:"services"`
	Endpoints   int      `json:"endpoints"`
	Proxies     int      `json:"proxies"`
	Problems    []string `json:"problems,omitempty"`
}

// ServiceState is one service and where its endpoints are.
type ServiceState struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Exported  bool            `json:"exported"`
	Locations []LocationState `json:"locations"`
}

// LocationState counts a service's endpoints in one cluster and zone, as
// that cluster's own control plane serves them.
type LocationState struct {
	Cluster   string `json:"cluster"`
	Region    string `json:"region"`
	Zone      string `json:"zone"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
}

// LinkState is one cluster's import from a peer.
type LinkState struct {
	From      string    `json:"from"` // the importing cluster
	To        string    `json:"to"`   // the peer
	State     string    `json:"state"`
	Healthy   bool      `json:"healthy"`
	Revision  uint64    `json:"revision"`
	Services  int       `json:"services"`
	Endpoints int       `json:"endpoints"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// TrustState is one cluster's copy of a peer's trust bundle.
type TrustState struct {
	Holder      string    `json:"holder"`
	TrustDomain string    `json:"trust_domain"`
	Healthy     bool      `json:"healthy"`
	Sequence    *uint64   `json:"sequence,omitempty"`
	Expiry      time.Time `json:"expiry,omitzero"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Flow is the outbound requests from one cluster to another cluster's
// zone, summed over the source cluster's sidecars.
type Flow struct {
	From   string `json:"from"`
	To     string `json:"to"`
	ToZone string `json:"to_zone"`
	// Requests and Failed (5xx or no response) since the collector
	// started; RPS and FailedRPS over the last Window.
	Requests  float64 `json:"requests"`
	Failed    float64 `json:"failed"`
	RPS       float64 `json:"rps"`
	FailedRPS float64 `json:"failed_rps"`
}

// PodState is one scraped sidecar.
type PodState struct {
	Cluster string `json:"cluster"`
	Zone    string `json:"zone"`
	Pod     string `json:"pod"`
	Up      bool   `json:"up"`
	Error   string `json:"error,omitempty"`
}

type flowKey struct{ from, to, toZone string }

type counts struct{ req, failed float64 }

type sample struct {
	at    time.Time
	flows map[flowKey]counts
}

// Collector builds States; see the package doc.
type Collector struct {
	o Options

	mu   sync.Mutex
	last State
	// raw is each target's last counter values, by series.
	raw map[string]map[string]float64
	// cum is the increase of each flow since the collector started.
	cum  map[flowKey]counts
	hist []sample
}

// New returns a Collector for o.
func New(o Options) (*Collector, error) {
	for i, c := range o.Clusters {
		if c.Name == "" || c.Admin == "" {
			return nil, fmt.Errorf("dashboard: Options.Clusters[%d]: Name and Admin are required (got %q, %q)", i, c.Name, c.Admin)
		}
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Window <= 0 {
		o.Window = 5 * time.Second
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 500 * time.Millisecond
	}
	return &Collector{o: o, raw: map[string]map[string]float64{}, cum: map[flowKey]counts{}}, nil
}

// Collect scrapes everything (or returns a State younger than MinInterval).
func (c *Collector) Collect(ctx context.Context) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if !c.last.Time.IsZero() && now.Sub(c.last.Time) < c.o.MinInterval {
		return c.last
	}
	st := State{Time: now.UTC()}
	type cpResult struct {
		status controlplane.StatusReport
		model  string
		err    error
	}
	cps := make([]cpResult, len(c.o.Clusters))
	var targets []Target
	if c.o.Targets != nil {
		targets = c.o.Targets()
	}
	type scrape struct {
		series map[string]float64
		err    error
	}
	scrapes := make([]scrape, len(targets))
	var wg sync.WaitGroup
	for i, cl := range c.o.Clusters {
		wg.Go(func() {
			r := &cps[i]
			var body string
			if body, r.err = c.get(ctx, strings.TrimRight(cl.Admin, "/")+"/status"); r.err == nil {
				r.err = json.Unmarshal([]byte(body), &r.status)
			}
			if r.err == nil {
				r.model, r.err = c.get(ctx, strings.TrimRight(cl.Admin, "/")+"/model")
			}
		})
	}
	for i, t := range targets {
		wg.Go(func() {
			body, err := c.get(ctx, t.URL)
			if err == nil {
				scrapes[i].series, err = ParseRequests(strings.NewReader(body))
			}
			scrapes[i].err = err
		})
	}
	wg.Wait()

	svcs := map[[2]string]*ServiceState{}
	for i, cl := range c.o.Clusters {
		r := cps[i]
		cs := ClusterState{Name: cl.Name, Region: cl.Region, Zones: slices.Clone(cl.Zones), Admin: cl.Admin}
		if r.err != nil {
			cs.Error = r.err.Error()
			st.Clusters = append(st.Clusters, cs)
			continue
		}
		s := r.status
		cs.Reachable, cs.Ready, cs.TrustDomain = true, s.Ready, s.TrustDomain
		cs.Services, cs.Endpoints, cs.Proxies, cs.Problems = s.Services, s.Endpoints, len(s.Proxies), s.Problems
		for _, l := range s.Links {
			st.Links = append(st.Links, LinkState{From: cl.Name, To: l.Peer, State: l.State, Healthy: l.Healthy, Revision: l.Revision,
				Services: l.Services, Endpoints: l.Endpoints, LastSync: l.LastSync, LastError: l.LastError})
		}
		for _, t := range s.Trust {
			st.Trust = append(st.Trust, TrustState{Holder: cl.Name, TrustDomain: t.TrustDomain, Healthy: t.Healthy, Sequence: t.Sequence,
				Expiry: t.Expiry, LastRefresh: t.LastRefresh, LastError: t.LastError})
		}
		for _, ms := range ParseModel(r.model) {
			k := [2]string{ms.Namespace, ms.Name}
			sv := svcs[k]
			if sv == nil {
				sv = &ServiceState{Namespace: ms.Namespace, Name: ms.Name}
				svcs[k] = sv
			}
			sv.Exported = sv.Exported || ms.Exported
			for _, e := range ms.Endpoints {
				if e.Cluster != cl.Name {
					continue // a peer's endpoint: its own control plane tells
				}
				if cs.Region == "" {
					cs.Region = e.Region
				}
				if len(cl.Zones) == 0 && e.Zone != "" && !slices.Contains(cs.Zones, e.Zone) {
					cs.Zones = append(cs.Zones, e.Zone)
				}
				j := slices.IndexFunc(sv.Locations, func(l LocationState) bool { return l.Cluster == e.Cluster && l.Zone == e.Zone })
				if j < 0 {
					sv.Locations = append(sv.Locations, LocationState{Cluster: e.Cluster, Region: e.Region, Zone: e.Zone})
					j = len(sv.Locations) - 1
				}
				sv.Locations[j].Endpoints++
				if e.Ready {
					sv.Locations[j].Ready++
				}
			}
		}
		if len(cl.Zones) == 0 {
			slices.Sort(cs.Zones)
		}
		st.Clusters = append(st.Clusters, cs)
	}
	for _, sv := range svcs {
		slices.SortFunc(sv.Locations, func(a, b LocationState) int {
			return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Zone, b.Zone))
		})
		st.Services = append(st.Services, *sv)
	}
	slices.SortFunc(st.Services, func(a, b ServiceState) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(st.Links, func(a, b LinkState) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	slices.SortFunc(st.Trust, func(a, b TrustState) int {
		return cmp.Or(cmp.Compare(a.Holder, b.Holder), cmp.Compare(a.TrustDomain, b.TrustDomain))
	})

	for i, t := range targets {
		p := PodState{Cluster: t.Cluster, Zone: t.Zone, Pod: t.Pod, Up: scrapes[i].err == nil}
		if scrapes[i].err != nil {
			p.Error = scrapes[i].err.Error()
		} else {
			c.account(t.URL, scrapes[i].series)
		}
		st.Pods = append(st.Pods, p)
	}
	slices.SortFunc(st.Pods, func(a, b PodState) int { return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Pod, b.Pod)) })
	st.Flows, st.Window = c.rates(now)
	c.last = st
	return st
}

// account adds a target's counter increases since its last scrape to cum.
func (c *Collector) account(target string, series map[string]float64) {
	prev := c.raw[target]
	for k, v := range series {
		d := v
		if p, ok := prev[k]; ok && v >= p {
			d = v - p
		}
		if d == 0 {
			continue
		}
		fk, failed := parseSeriesKey(k)
		n := c.cum[fk]
		n.req += d
		if failed {
			n.failed += d
		}
		c.cum[fk] = n
	}
	c.raw[target] = series
}

// rates records a sample and measures each flow over the window.
func (c *Collector) rates(now time.Time) ([]Flow, float64) {
	c.hist = append(c.hist, sample{at: now, flows: maps.Clone(c.cum)})
	for len(c.hist) > 2 && now.Sub(c.hist[1].at) >= c.o.Window {
		c.hist = c.hist[1:]
	}
	base := c.hist[0]
	dt := now.Sub(base.at).Seconds()
	flows := make([]Flow, 0, len(c.cum))
	for k, n := range c.cum {
		f := Flow{From: k.from, To: k.to, ToZone: k.toZone, Requests: n.req, Failed: n.failed}
		if dt > 0 {
			b := base.flows[k]
			f.RPS, f.FailedRPS = (n.req-b.req)/dt, (n.failed-b.failed)/dt
		}
		flows = append(flows, f)
	}
	slices.SortFunc(flows, func(a, b Flow) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.ToZone, b.ToZone))
	})
	return flows, dt
}

func (c *Collector) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// requestsMetric is the sidecars' request counter.
const requestsMetric = "causeway_proxy_requests_total"

// ParseRequests reads a Prometheus text exposition and returns the
// outbound causeway_proxy_requests_total series, keyed by
// "<source_cluster>\x00<destination_cluster>\x00<destination zone>\x00<response_code>".
func ParseRequests(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	fam := fams[requestsMetric]
	if fam == nil {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		l := labels(m)
		if l["direction"] != "outbound" || m.GetCounter() == nil {
			continue
		}
		loc := l["destination_locality"]
		zone := loc
		if parts := strings.Split(loc, "/"); len(parts) > 1 {
			zone = parts[1]
		}
		out[strings.Join([]string{l["source_cluster"], l["destination_cluster"], zone, l["response_code"]}, "\x00")] += m.GetCounter().GetValue()
	}
	return out, nil
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// parseSeriesKey splits a ParseRequests key; failed is a 5xx or no response.
func parseSeriesKey(k string) (flowKey, bool) {
	p := strings.SplitN(k, "\x00", 4)
	for len(p) < 4 {
		p = append(p, "")
	}
	code, err := strconv.Atoi(p[3])
	return flowKey{from: p[0], to: p[1], toZone: p[2]}, err != nil || code == 0 || code >= 500
}

// ModelService is a service as a control plane's /model prints it.
type ModelService struct {
	Namespace, Name    string
	Exported, Imported bool
	Endpoints          []ModelEndpoint
}

// ModelEndpoint is one endpoint line of /model.
type ModelEndpoint struct {
	Address, Cluster, Region, Zone string
	Ready                          bool
}

// ParseModel reads the printable model (model.Snapshot.String): its
// "service" lines and their "endpoint" lines; other lines are skipped.
func ParseModel(text string) []ModelService {
	var out []ModelService
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "service "):
			f := strings.Fields(line)
			ns, name, _ := strings.Cut(f[1], "/")
			s := ModelService{Namespace: ns, Name: name}
			s.Exported = slices.Contains(f[2:], "exported")
			s.Imported = slices.Contains(f[2:], "imported")
			out = append(out, s)
		case strings.HasPrefix(line, "  endpoint ") && len(out) > 0:
			f := strings.Fields(line)
			e := ModelEndpoint{Address: f[1]}
			for _, kv := range f[2:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "cluster":
					e.Cluster = v
				case "locality":
					if v != "-" {
						parts := strings.Split(v, "/")
						e.Region = parts[0]
						if len(parts) > 1 {
							e.Zone = parts[1]
						}
					}
				case "ready":
					e.Ready = v == "true"
				}
			}
			s := &out[len(out)-1]
			s.Endpoints = append(s.Endpoints, e)
		}
	}
	return out
}

// Close releases the collector's idle connections.
func (c *Collector) Close() { c.o.Client.CloseIdleConnections() }
