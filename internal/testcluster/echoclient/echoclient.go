package echoclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Args are the command's arguments.
type Args struct {
	URL     string
	Method  string
	Headers [][2]string
	Count   int
}

// ParseArgs parses the suite's argv (without the program name).
func ParseArgs(argv []string) (Args, error) {
	a := Args{Method: http.MethodGet, Count: 1}
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			if a.URL != "" {
				return a, fmt.Errorf("client: second URL %q (the first is %q)", arg, a.URL)
			}
			a.URL = arg
			continue
		}
		if !hasVal && name != "" {
			if i+1 >= len(argv) {
				return a, fmt.Errorf("client: flag %s needs a value", arg)
			}
			i++
			val = argv[i]
		}
		switch name {
		case "method", "X":
			a.Method = val
		case "H", "header":
			k, v, ok := strings.Cut(val, ":")
			if !ok {
				return a, fmt.Errorf("client: header %q: want name:value", val)
			}
			a.Headers = append(a.Headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		case "count", "c":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return a, fmt.Errorf("client: --count=%q: want a positive integer", val)
			}
			a.Count = n
		default:
			return a, fmt.Errorf("client: unknown flag %s (known: --method, -H, --count)", arg)
		}
	}
	if a.URL == "" {
		return a, errors.New("client: no URL (usage: client <url> [--method=M] [-H name:value]... [--count=N])")
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return a, fmt.Errorf("client: URL %q: %w", a.URL, err)
	}
	if u.Scheme != "http" {
		return a, fmt.Errorf("client: URL %q: scheme %q not supported (only http)", a.URL, u.Scheme)
	}
	return a, nil
}

// Resolver maps a URL host (no port) to an IP address to dial.
type Resolver func(ctx context.Context, host string) (string, error)

// NewHTTPClient is a client that dials through resolve, never follows
// redirects and keeps connections alive across a --count batch.
func NewHTTPClient(resolve Resolver, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ip, err := resolve(ctx, host)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
		},
		MaxIdleConnsPerHost: 4,
		DisableCompression:  true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// echoBasic is the part of echo-basic's JSON answer the suite reads.
type echoBasic struct {
	Path      string              `json:"path"`
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	Namespace string              `json:"namespace"`
	Pod       string              `json:"pod"`
}

// Run sends a.Count requests one after the other and writes one block per
// request to out. It fails on the first request that gets no response.
func Run(ctx context.Context, hc *http.Client, a Args, out io.Writer) error {
	var b strings.Builder
	for i := range a.Count {
		b.Reset()
		if err := one(ctx, hc, a, i, &b); err != nil {
			return fmt.Errorf("client: request %d of %d to %s: %w", i+1, a.Count, a.URL, err)
		}
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
	}
	return nil
}

func one(ctx context.Context, hc *http.Client, a Args, i int, b *strings.Builder) error {
	req, err := http.NewRequestWithContext(ctx, a.Method, a.URL, nil)
	if err != nil {
		return err
	}
	for _, h := range a.Headers {
		if strings.EqualFold(h[0], "Host") {
			req.Host = h[1]
			continue
		}
		req.Header.Add(h[0], h[1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	p := fmt.Sprintf("[%d] ", i)
	fmt.Fprintf(b, "%sUrl=%s\n", p, a.URL)
	fmt.Fprintf(b, "%sStatusCode=%d\n", p, resp.StatusCode)
	for _, k := range sortedKeys(resp.Header) {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(b, "%sResponseHeader=%s:%s\n", p, k, v)
		}
	}
	var eb echoBasic
	if json.Unmarshal(body, &eb) == nil && eb.Pod != "" {
		bp := fmt.Sprintf("[%d body] ", i)
		fmt.Fprintf(b, "%sMethod=%s\n", bp, eb.Method)
		fmt.Fprintf(b, "%sProto=%s\n", bp, eb.Proto)
		fmt.Fprintf(b, "%sURL=%s\n", bp, eb.Path)
		fmt.Fprintf(b, "%sHost=%s\n", bp, eb.Host)
		fmt.Fprintf(b, "%sHostname=%s\n", bp, eb.Pod)
		fmt.Fprintf(b, "%sNamespace=%s\n", bp, eb.Namespace)
		for _, k := range sortedKeys(eb.Headers) {
			for _, v := range eb.Headers[k] {
				fmt.Fprintf(b, "%sRequestHeader=%s:%s\n", bp, k, v)
			}
		}
	}
	b.WriteString("\n")
	return nil
}

func sortedKeys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
