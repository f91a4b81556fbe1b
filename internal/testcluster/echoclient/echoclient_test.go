package echoclient

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		argv    []string
		want    Args
		wantErr string
	}{
		{name: "suite's form", argv: []string{"http://echo/path", "--method=POST", "-H", "X-A:1", "-H", "X-B: two", "--count=3"},
			want: Args{URL: "http://echo/path", Method: "POST", Headers: [][2]string{{"X-A", "1"}, {"X-B", "two"}}, Count: 3}},
		{name: "defaults", argv: []string{"http://echo"}, want: Args{URL: "http://echo", Method: "GET", Count: 1}},
		{name: "no URL", argv: []string{"--count=2"}, wantErr: "no URL"},
		{name: "bad count", argv: []string{"http://echo", "--count=0"}, wantErr: "positive integer"},
		{name: "bad header", argv: []string{"http://echo", "-H", "nocolon"}, wantErr: "name:value"},
		{name: "grpc", argv: []string{"grpc://echo:7070"}, wantErr: "only http"},
		{name: "unknown flag", argv: []string{"http://echo", "--timeout=1s"}, wantErr: "unknown flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseArgs(tc.argv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.URL != tc.want.URL || got.Method != tc.want.Method || got.Count != tc.want.Count || len(got.Headers) != len(tc.want.Headers) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.Headers {
				if got.Headers[i] != tc.want.Headers[i] {
					t.Fatalf("header %d: got %v, want %v", i, got.Headers[i], tc.want.Headers[i])
				}
			}
		})
	}
}

// TestRun serves echo-basic's JSON shape on 127.78.0.1 and checks the
// lines the suite's echo.ParseResponse reads.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.78.0.1:18080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			w.Header().Set("Location", "http://other/")
			w.WriteHeader(http.StatusFound)
			return
		}
		w.Header().Set("X-Resp", "r1")
		_ = json.NewEncoder(w).Encode(echoBasic{Path: r.URL.Path, Host: r.Host, Method: r.Method, Proto: r.Proto,
			Headers: r.Header, Namespace: "ns", Pod: "echo-v1-abc"})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	resolve := func(_ context.Context, host string) (string, error) {
		if host != "echo" {
			return "", errors.New("unknown host " + host)
		}
		return "127.78.0.1", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		args    Args
		want    []string
		blocks  int
		wantErr string
	}{
		{name: "one", args: Args{URL: "http://echo:18080/p", Method: "GET", Count: 1, Headers: [][2]string{{"X-In", "v"}}},
			want: []string{"[0] StatusCode=200\n", "[0] ResponseHeader=X-Resp:r1\n", "[0 body] Hostname=echo-v1-abc\n",
				"[0 body] URL=/p\n", "[0 body] Method=GET\n", "[0 body] RequestHeader=X-In:v\n", "[0 body] Host=echo:18080\n"}, blocks: 1},
		{name: "batch", args: Args{URL: "http://echo:18080/", Method: "GET", Count: 3}, want: []string{"[2 body] Hostname=echo-v1-abc\n"}, blocks: 3},
		{name: "redirect not followed", args: Args{URL: "http://echo:18080/redirect", Method: "GET", Count: 1},
			want: []string{"[0] StatusCode=302\n", "[0] ResponseHeader=Location:http://other/\n"}, blocks: 1},
		{name: "unresolvable", args: Args{URL: "http://nope:18080/", Method: "GET", Count: 1}, wantErr: "unknown host nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := NewHTTPClient(resolve, 5*time.Second)
			defer hc.CloseIdleConnections()
			var out strings.Builder
			err := Run(ctx, hc, tc.args, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if n := strings.Count(out.String(), "\n\n"); n != tc.blocks {
				t.Errorf("%d blocks, want %d:\n%s", n, tc.blocks, out.String())
			}
		})
	}
}
