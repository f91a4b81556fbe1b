package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/federation/peerapi"
	"github.com/causewaymesh/causeway/internal/controlplane"
	"github.com/causewaymesh/causeway/internal/trustplane"
	"github.com/causewaymesh/causeway/internal/up"
	"github.com/causewaymesh/causeway/trust/bundles"
)

// linkInfo is the admin /link: what a peer needs to federate with this
// cluster. It carries only public material (the roots' certificates).
type linkInfo struct {
	Cluster     string `json:"cluster"`
	Network     string `json:"network,omitempty"`
	TrustDomain string `json:"trust_domain"`
	// Federation is the exporter's address (--federation-listen), host:port.
	Federation string `json:"federation,omitempty"`
	// BundleEndpoint is the SPIFFE bundle endpoint (https_spiffe) and
	// BundleEndpointID the SPIFFE ID it presents.
	BundleEndpoint   string `json:"bundle_endpoint,omitempty"`
	BundleEndpointID string `json:"bundle_endpoint_id,omitempty"`
	// TrustBundle is the PEM of the cluster's roots: the peer's bootstrap
	// bundle for https_spiffe.
	TrustBundle string `json:"trust_bundle,omitempty"`
}

// linkHandler serves linkInfo for `causeway link` (admin /link).
func linkHandler(c *controlPlaneConfig, plane *trustplane.Plane, fed *controlplane.Federation) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		li := linkInfo{Cluster: c.Cluster, Network: c.Network, TrustDomain: c.TrustDomain, Federation: c.FederationListen}
		if fed != nil && fed.Addr() != "" {
			li.Federation = fed.Addr()
		}
		if plane != nil {
			li.BundleEndpoint = plane.BundleURL()
			li.TrustBundle = string(plane.RootsPEM())
			if td, err := spiffeid.TrustDomainFromString(c.TrustDomain); err == nil {
				li.BundleEndpointID = bundles.ControlPlaneID(td).String()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(li)
	})
}

// linkConfig is the `causeway link` command line.
type linkConfig struct {
	Admin, State               string
	Cluster                    string
	Federation, BundleEndpoint string
	Output                     string
	Direction                  string
	Timeout                    time.Duration
}

// peerLinkTemplate is the Peer object `causeway link` prints: the same
// fields as `causeway control-plane --peer` (cluster, trust-domain,
// federation, bundle, bundle-file), with the bootstrap bundle inline.
var peerLinkTemplate = template.Must(template.New("peer").Parse(`# Federation link to cluster {{.Cluster}} (trust domain {{.TrustDomain}}), printed by
# ` + "`causeway link`" + ` from its control plane. Apply it in each cluster that should
# import {{.Cluster}}'s exported services and trust its workloads. The trust bundle
# is public (root certificates only) and bootstraps https_spiffe: check it
# reached you unaltered (compare its fingerprint with {{.Cluster}}'s operator).
# Local mode, the same link as a flag (trustBundle saved as {{.Cluster}}-bundle.pem):
#   causeway control-plane ... --peer {{.PeerFlag}}
apiVersion: federation.causeway.dev/v1alpha1
kind: Peer
metadata:
  name: {{.Cluster}}
spec:
  cluster: {{.Cluster}}
  trustDomain: {{.TrustDomain}}
{{- if .Network}}
  network: {{.Network}}
{{- end}}
{{- if .Federation}}
  federation: {{.Federation}}
{{- end}}
{{- if .BundleEndpoint}}
  bundleEndpoint:
    url: {{.BundleEndpoint}}
    profile: https_spiffe
    spiffeID: {{.BundleEndpointID}}
{{- end}}
{{- if .TrustBundle}}
  trustBundle: |
{{.IndentedBundle}}
{{- end}}
{{- if .Direction}}
  direction: {{.Direction}}
{{- end}}
`))

// writePeerLink prints li as a Peer object; direction ("" for the
// default, Both) is the link's direction as its applier sees it.
func writePeerLink(w io.Writer, li linkInfo, direction string) error {
	flag := "cluster=" + li.Cluster + ",trust-domain=" + li.TrustDomain
	if li.Federation != "" {
		flag += ",federation=" + li.Federation
	}
	if li.BundleEndpoint != "" {
		flag += ",bundle=" + li.BundleEndpoint
	}
	if li.TrustBundle != "" {
		flag += ",bundle-file=" + li.Cluster + "-bundle.pem"
	}
	var ind []string
	for l := range strings.SplitSeq(strings.TrimRight(li.TrustBundle, "\n"), "\n") {
		ind = append(ind, "    "+l)
	}
	return peerLinkTemplate.Execute(w, struct {
		linkInfo
		PeerFlag, IndentedBundle, Direction string
	}{li, flag, strings.Join(ind, "\n"), direction})
}

// runLink is `causeway link`: the Peer object (the link) of a running
// control plane's cluster, for its peers to apply.
func runLink(args []string, stdout, stderr io.Writer) int {
	var c linkConfig
	fs := flag.NewFlagSet("causeway link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Admin, "admin", "", "the control plane to read, host:port (its --admin); default: the --cluster of the `causeway up` running here")
	fs.StringVar(&c.Cluster, "cluster", "", "with no --admin: which cluster of the running `causeway up` (default: its first)")
	fs.StringVar(&c.State, "state", up.StatePath(), "state file of the running `causeway up` (without --admin)")
	fs.StringVar(&c.Federation, "federation-address", "", "print this host:port as the federation endpoint instead of the one the control plane listens on (e.g. a LoadBalancer's address)")
	fs.StringVar(&c.BundleEndpoint, "bundle-endpoint", "", "print this https URL as the bundle endpoint instead of the one the control plane listens on")
	fs.StringVar(&c.Output, "o", "yaml", `output: "yaml" (the Peer object) or "json" (what the admin /link serves)`)
	fs.StringVar(&c.Direction, "direction", "", `the link's direction in the cluster that applies it: "Both" (default), "Import" (it only imports from this cluster) or "Export" (it only lets this cluster import from it)`)
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "how long to wait for the control plane")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "causeway link: unexpected argument %q; name the control plane with --admin host:port\n", fs.Arg(0))
		return 2
	}
	switch peerapi.Direction(c.Direction) {
	case "", peerapi.DirectionBoth, peerapi.DirectionImport, peerapi.DirectionExport:
	default:
		fmt.Fprintf(stderr, "causeway link: --direction %q: want Both, Import or Export\n", c.Direction)
		return 2
	}
	if c.Output != "yaml" && c.Output != "json" {
		fmt.Fprintf(stderr, "causeway link: -o %q: want \"yaml\" or \"json\"\n", c.Output)
		return 2
	}
	if c.Federation != "" {
		if _, p, err := net.SplitHostPort(c.Federation); err != nil || p == "" {
			fmt.Fprintf(stderr, "causeway link: --federation-address %q: want host:port\n", c.Federation)
			return 2
		}
	}
	if c.BundleEndpoint != "" {
		if u, err := url.Parse(c.BundleEndpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			fmt.Fprintf(stderr, "causeway link: --bundle-endpoint %q: want an https:// URL\n", c.BundleEndpoint)
			return 2
		}
	}
	target, err := oneTarget(c.Admin, c.State, c.Cluster)
	if err != nil {
		fmt.Fprintln(stderr, "causeway link:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	var li linkInfo
	if err := getJSON(ctx, target.URL+"/link", &li); err != nil {
		fmt.Fprintf(stderr, "causeway link: %v; %s\n", err, target.Hint)
		return 1
	}
	if c.Federation != "" {
		li.Federation = c.Federation
	}
	if c.BundleEndpoint != "" {
		li.BundleEndpoint = c.BundleEndpoint
	}
	var problems []string
	if li.Federation == "" {
		problems = append(problems, "it serves no federation endpoint: start it with --federation-listen (or pass --federation-address)")
	}
	if li.TrustBundle == "" || li.BundleEndpoint == "" {
		problems = append(problems, "it has no trust bundle or bundle endpoint: start it with --mtls and --bundle-listen")
	}
	if c.Output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(li)
	} else {
		err = writePeerLink(stdout, li, c.Direction)
	}
	if err != nil {
		fmt.Fprintln(stderr, "causeway link:", err)
		return 1
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "causeway link: cluster %s: %s\n", li.Cluster, p)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// oneTarget is the control plane named by --admin, else the cluster (or
// the first) of the `causeway up` running here.
func oneTarget(admin, state, cluster string) (statusTarget, error) {
	if admin != "" {
		ts, err := adminTargets(admin)
		if err != nil {
			return statusTarget{}, err
		}
		if len(ts) != 1 {
			return statusTarget{}, fmt.Errorf("--admin %q: name one control plane", admin)
		}
		return ts[0], nil
	}
	ts, err := upTargets(state)
	if err != nil {
		return statusTarget{}, err
	}
	if cluster == "" {
		return ts[0], nil
	}
	var names []string
	for _, t := range ts {
		if t.Cluster == cluster {
			return t, nil
		}
		names = append(names, t.Cluster)
	}
	return statusTarget{}, fmt.Errorf("--cluster %q: the running `causeway up` has %s", cluster, strings.Join(names, ", "))
}

// getJSON fetches u and decodes it into v.
func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (is it an older causeway without this endpoint?)", u, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
