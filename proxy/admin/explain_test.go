package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestExplainEndpoint(t *testing.T) {
	type call struct {
		Listener, Authority, Path, Method string
		Headers                           http.Header
	}
	srv := start(t, Sources{Explain: func(listener, authority, path, method string, h http.Header) any {
		return call{listener, authority, path, method, h}
	}})
	tests := []struct {
		name, query string
		code        int
		want        call
		errText     string
	}{
		{"all parameters", "?listener=outbound_8080&authority=reviews:8080&path=/api%3Fq%3D1&method=POST&h_x-canary=yes&h_x-canary=2&h_accept=text/plain", 200,
			call{"outbound_8080", "reviews:8080", "/api?q=1", "POST", http.Header{"X-Canary": {"yes", "2"}, "Accept": {"text/plain"}}}, ""},
		{"defaults", "?authority=reviews", 200, call{"", "reviews", "/", "", http.Header{}}, ""},
		{"no authority", "?path=/x", 400, call{}, "authority parameter is required"},
		{"relative path", "?authority=a&path=x", 400, call{}, `path "x" must start with /`},
		{"empty header name", "?authority=a&h_=v", 400, call{}, `"h_" names no header`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, srv, "/explain"+tc.query)
			if resp.code != tc.code {
				t.Fatalf("code %d, want %d: %s", resp.code, tc.code, resp.body)
			}
			if tc.code != 200 {
				if !strings.Contains(resp.body, tc.errText) {
					t.Errorf("body %q does not contain %q", resp.body, tc.errText)
				}
				return
			}
			var got call
			if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
				t.Fatalf("decoding %q: %v", resp.body, err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) {
				t.Errorf("got %s, want %s", gj, wj)
			}
		})
	}
	if r := do(t, http.MethodPost, "http://"+srv.Addr()+"/explain?authority=a", nil); r.code != http.StatusMethodNotAllowed {
		t.Errorf("POST: code %d, want 405", r.code)
	}
}

func TestExplainNotConfigured(t *testing.T) {
	srv := start(t, Sources{})
	if r := get(t, srv, "/explain?authority=a"); r.code != http.StatusNotImplemented {
		t.Errorf("code %d, want 501", r.code)
	}
}
