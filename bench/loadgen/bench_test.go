package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := range b.N {
		h.Record(time.Duration(50_000 + i%200_000))
	}
}

// BenchmarkRawClientDo is one keep-alive round trip to a net/http server on
// loopback: it bounds what the load generator costs per request.
func BenchmarkRawClientDo(b *testing.B) {
	body := []byte(strings.Repeat("a", 128))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	c := newRawClient(strings.TrimPrefix(srv.URL, "http://"), "bench", "/")
	defer c.close()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.do(time.Now().Add(5 * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
