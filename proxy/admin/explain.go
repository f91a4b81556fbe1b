package admin

import (
	"fmt"
	"net/http"
	"strings"
)

// explain serves GET /explain?listener=&authority=&path=&method=&h_<name>=v
// as JSON from Sources.Explain. authority is required; path defaults to
// "/", method to GET, listener to the proxy's guess; each h_<name>
// parameter becomes a request header (repeat it for several values).
func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	if s.src.Explain == nil {
		notConfigured("Explain").ServeHTTP(w, r)
		return
	}
	q := r.URL.Query()
	authority := q.Get("authority")
	if authority == "" {
		http.Error(w, "admin: /explain: the authority parameter is required (e.g. /explain?authority=reviews.default:8080&path=/api)", http.StatusBadRequest)
		return
	}
	path := q.Get("path")
	if path == "" {
		path = "/"
	}
	if path[0] != '/' {
		http.Error(w, fmt.Sprintf("admin: /explain: path %q must start with /", path), http.StatusBadRequest)
		return
	}
	h := http.Header{}
	for k, vs := range q {
		name, ok := strings.CutPrefix(k, "h_")
		if !ok {
			continue
		}
		if name == "" {
			http.Error(w, "admin: /explain: parameter \"h_\" names no header; use h_<name>=value", http.StatusBadRequest)
			return
		}
		for _, v := range vs {
			h.Add(name, v)
		}
	}
	writeJSON(w, s.src.Explain(q.Get("listener"), authority, path, q.Get("method"), h))
}
