// Package dashboard is Causeway's live web page: clusters as regions and
// zones, services and where their healthy endpoints are, federation links
// and trust (bundle sequence, expiry), and request rates and failures
// between clusters.
//
// # What it owns
//
// A Collector reads what already exists: each control plane's admin
// /status (JSON) and /model (its printable form), and each sidecar's
// Prometheus metrics (/stats/prometheus, parsed with expfmt). It turns
// them into one State, the JSON the page polls every second at
// <mount>/state.json. Rates are the increase of the sidecars' outbound
// causeway_proxy_requests_total over the last Options.Window (a counter
// that goes down is a restarted sidecar: its new value is the increase).
// A control plane or sidecar that does not answer is shown as such; it
// never fails the whole State.
//
// Handler serves the page: plain HTML, CSS and JavaScript embedded in the
// binary (go:embed static), no build step. `causeway control-plane` mounts
// it at /dashboard/ on its admin listener (its own cluster, no sidecar
// metrics); `causeway up` serves it for all its clusters and sidecars.
//
// # Concurrency
//
// A Collector is safe for concurrent use. Collect is serialised by one
// mutex (its scrapes run in parallel inside it); a State younger than
// Options.MinInterval is returned again instead of scraping, so any number
// of open pages cost one scrape per interval.
package dashboard
