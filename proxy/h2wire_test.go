package proxy

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/http2/hpack"
)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// TestEncodeFieldNeverIndexes checks that credentials leave as
// never-indexed literals (a decoder sees Sensitive, and a second
// identical field is not shorter), while other fields enter the dynamic
// table (the second time they are one indexed byte).
func TestEncodeFieldNeverIndexes(t *testing.T) {
	var w h2Wire
	w.initWire(nopCloser{}, bytes.NewReader(nil), bufio.NewWriter(io.Discard))
	dec := hpack.NewDecoder(4096, nil)
	block := func(k, v string) ([]hpack.HeaderField, int) {
		t.Helper()
		w.hbuf.Reset()
		w.encodeField(k, []string{v})
		n := w.hbuf.Len()
		fields, err := dec.DecodeFull(w.hbuf.Bytes())
		if err != nil {
			t.Fatalf("decode %s: %v", k, err)
		}
		return fields, n
	}
	for _, tc := range []struct {
		key   string
		never bool
	}{
		{"Authorization", true},
		{"Proxy-Authorization", true},
		{"X-Request-Id", false},
		{"X-Custom", false},
		{"User-Agent", false},
	} {
		const v = "0af7651916cd43dd8448eb211c80319c"
		f1, n1 := block(tc.key, v)
		f2, n2 := block(tc.key, v)
		if len(f1) != 1 || len(f2) != 1 || f1[0].Value != v || f2[0].Value != v {
			t.Fatalf("%s: decoded %v then %v", tc.key, f1, f2)
		}
		if f1[0].Sensitive != tc.never || f2[0].Sensitive != tc.never {
			t.Errorf("%s: Sensitive = %v, %v; want %v", tc.key, f1[0].Sensitive, f2[0].Sensitive, tc.never)
		}
		if tc.never && n2 != n1 {
			t.Errorf("%s: second block %d bytes, first %d: it was indexed", tc.key, n2, n1)
		}
		if !tc.never && n2 != 1 {
			t.Errorf("%s: second block %d bytes, want 1 (an indexed field)", tc.key, n2)
		}
	}
}
