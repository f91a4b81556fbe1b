package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProxiesGetsAndRefusesBodies sends keep-alive GETs through the floor
// proxy to a net/http backend, then a POST with a body, which it answers
// 501 and closes.
func TestProxiesGetsAndRefusesBodies(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &proxy{upstream: backend.Listener.Addr().String(), idle: make(chan *upConn, 4)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.serve(c)
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, path := range []string{"/a", "/b"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: floor\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "hello "+path {
			t.Fatalf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, body, "hello "+path)
		}
	}
	io.WriteString(c, "POST /c HTTP/1.1\r\nHost: floor\r\nContent-Length: 3\r\n\r\nabc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	if resp.StatusCode != http.StatusNotImplemented || !resp.Close {
		t.Errorf("POST with a body: %d, close %v; want 501 and close", resp.StatusCode, resp.Close)
	}
	<-done
	for len(p.idle) > 0 {
		(<-p.idle).c.Close()
	}
	if rest, _ := io.ReadAll(br); strings.TrimSpace(string(rest)) != "" {
		t.Errorf("bytes after the 501: %q", rest)
	}
}
