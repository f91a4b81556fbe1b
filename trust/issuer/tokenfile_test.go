package issuer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestTokenFileParse(t *testing.T) {
	const tok = "abcdefghijklmnop-1"
	tests := []struct {
		name    string
		file    string
		want    map[string]spiffeid.ID // token -> id
		wantErr string
	}{
		{name: "shorthand and full id", file: "# c\n\n  demo/web " + tok + "  \nspiffe://example.org/ns/demo/sa/db\tabcdefghijklmnop-2\n",
			want: map[string]spiffeid.ID{tok: idWeb, "abcdefghijklmnop-2": idDB}},
		{name: "two tokens for one identity", file: "demo/web " + tok + "\ndemo/web abcdefghijklmnop-3\n",
			want: map[string]spiffeid.ID{tok: idWeb, "abcdefghijklmnop-3": idWeb}},
		{name: "empty file", file: "", want: map[string]spiffeid.ID{}},
		{name: "one field", file: "demo/web\n", wantErr: ":1: has 1 fields"},
		{name: "three fields", file: "\ndemo/web " + tok + " extra\n", wantErr: ":2: has 3 fields"},
		{name: "short token", file: "demo/web short\n", wantErr: ":1: the token for spiffe://example.org/ns/demo/sa/web is 5 bytes; it must be 16"},
		{name: "duplicate token", file: "demo/web " + tok + "\ndemo/db " + tok + "\n", wantErr: ":2: the token for spiffe://example.org/ns/demo/sa/db is the same as the token on line 1"},
		{name: "foreign trust domain", file: "spiffe://other.org/ns/a/sa/b " + tok + "\n", wantErr: `identity "spiffe://other.org/ns/a/sa/b" is not in trust domain "example.org"`},
		{name: "no path", file: "spiffe://example.org " + tok + "\n", wantErr: "has no path"},
		{name: "bad shorthand", file: "web " + tok + "\n", wantErr: `identity "web" is neither`},
		{name: "bad namespace", file: "Demo/web " + tok + "\n", wantErr: `namespace "Demo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			a, err := NewTokenFileAuthenticator(path, testTD)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrTokenFile) {
					t.Fatalf("err = %v, want ErrTokenFile containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), tok) {
					t.Errorf("the error leaks the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", a.Len(), len(tt.want))
			}
			ctx := testCtx(t)
			for tok, want := range tt.want {
				got, err := a.Authenticate(ctx, tok)
				if err != nil || got != want {
					t.Errorf("Authenticate(token of %v) = %v, %v", want, got, err)
				}
			}
			for _, bad := range []string{"", tok + "x", tok[:len(tok)-1], "abcdefghijklmnop-9"} {
				if _, err := a.Authenticate(ctx, bad); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("Authenticate(%q) err = %v, want ErrInvalidToken", bad, err)
				}
			}
		})
	}
}

func TestTokenFileMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := writeTestTokenFile(t)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := NewTokenFileAuthenticator(path, testTD)
			if err == nil || !errors.Is(err, ErrTokenFile) || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Fatalf("err = %v, want a mode refusal naming chmod 600", err)
			}
		})
	}
	t.Run("0400 ok", func(t *testing.T) {
		path := writeTestTokenFile(t)
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := NewTokenFileAuthenticator(path, testTD); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := NewTokenFileAuthenticator(dir, testTD); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := NewTokenFileAuthenticator(filepath.Join(t.TempDir(), "nope"), testTD); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrNotExist", err)
		}
	})
}

func TestTokenFileReloadKeepsLastGood(t *testing.T) {
	path := writeTestTokenFile(t)
	a, err := NewTokenFileAuthenticator(path, testTD)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := os.WriteFile(path, []byte("garbage line here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Fatal("Reload of an invalid file succeeded")
	}
	if id, err := a.Authenticate(ctx, tokWeb); err != nil || id != idWeb {
		t.Fatalf("after a failed reload: %v, %v; want the old table", id, err)
	}
	newTok, err := GenerateToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteTokenFile(path, []TokenEntry{{ID: idDB, Token: newTok}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, tokWeb); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("old token still accepted after reload: %v", err)
	}
	if id, err := a.Authenticate(ctx, newTok); err != nil || id != idDB {
		t.Errorf("new token: %v, %v", id, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("WriteTokenFile mode = %04o, want 0600", fi.Mode().Perm())
	}
}

func TestTokenEntryRedacted(t *testing.T) {
	e := TokenEntry{ID: idWeb, Token: tokWeb}
	for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%v %+v %#v %s", e, e, e, e), fmt.Sprint([]TokenEntry{e})} {
		if strings.Contains(s, tokWeb) {
			t.Fatalf("formatted TokenEntry shows the token: %s", s)
		}
	}
	if err := WriteTokenFile(filepath.Join(t.TempDir(), "t"), []TokenEntry{{ID: idWeb, Token: "has space in it!!"}}); err == nil || strings.Contains(err.Error(), "has space") {
		t.Errorf("WriteTokenFile with a bad token: err = %v", err)
	}
}

func TestGenerateToken(t *testing.T) {
	a, err := GenerateToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 43 || a == b {
		t.Fatalf("tokens %d chars, equal=%v", len(a), a == b)
	}
	if _, err := GenerateToken(strings.NewReader("short")); err == nil {
		t.Fatal("GenerateToken with a short reader succeeded")
	}
}
