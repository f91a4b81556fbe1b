package issuer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/causewaymesh/causeway/trust"
)

// MinBootstrapTokenLen is the shortest bootstrap token a token file may hold.
const MinBootstrapTokenLen = 16

// ErrTokenFile is wrapped by every error about the content or mode of a
// token file.
var ErrTokenFile = errors.New("invalid bootstrap token file")

// TokenEntry is one line of a bootstrap token file: a workload identity and
// the token that proves it. Its String method never prints the token.
type TokenEntry struct {
	ID    spiffeid.ID
	Token string
}

// String shows the identity only.
func (e TokenEntry) String() string { return "TokenEntry{" + e.ID.String() + " token=<redacted>}" }

// GoString is String, so that %#v cannot print the token either.
func (e TokenEntry) GoString() string { return e.String() }

// TokenFileAuthenticator authenticates workloads in local mode by
// per-workload bootstrap tokens read from a file.
//
// File format (UTF-8 text, mode 0600 or stricter, enforced): one entry per
// line, "<identity> <token>", separated by spaces or tabs. Blank lines and
// lines starting with '#' are ignored. <identity> is a SPIFFE ID in the
// authenticator's trust domain (spiffe://<td>/<path>) or the shorthand
// <namespace>/<service-account>, which means trust.WorkloadID(td, ns, sa).
// <token> is at least MinBootstrapTokenLen non-space characters (use
// GenerateToken). A token may appear only once; an identity may have several
// tokens (to rotate them).
//
// Only SHA-256 digests of the tokens are kept in memory, and a presented
// token is compared with every entry in constant time. Tokens never appear
// in errors or logs; errors name the file and line.
//
// Authenticate and Reload are safe for concurrent use: Reload swaps an
// immutable table atomically and keeps the old one if the file is invalid.
type TokenFileAuthenticator struct {
	path  string
	td    spiffeid.TrustDomain
	table atomic.Pointer[tokenTable]
}

type tokenTable struct {
	digests [][sha256.Size]byte
	ids     []spiffeid.ID
}

// NewTokenFileAuthenticator loads path for trust domain td.
func NewTokenFileAuthenticator(path string, td spiffeid.TrustDomain) (*TokenFileAuthenticator, error) {
	if td.IsZero() {
		return nil, errors.New("issuer: NewTokenFileAuthenticator: trust domain is empty")
	}
	a := &TokenFileAuthenticator{path: path, td: td}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads the file. On error the previous table stays in use.
func (a *TokenFileAuthenticator) Reload() error {
	t, err := loadTokenFile(a.path, a.td)
	if err != nil {
		return err
	}
	a.table.Store(t)
	return nil
}

// Len is the number of tokens loaded.
func (a *TokenFileAuthenticator) Len() int { return len(a.table.Load().ids) }

// Authenticate implements Authenticator.
func (a *TokenFileAuthenticator) Authenticate(_ context.Context, token string) (spiffeid.ID, error) {
	t := a.table.Load()
	d := sha256.Sum256([]byte(token))
	match := -1
	for i := range t.digests {
		eq := subtle.ConstantTimeCompare(d[:], t.digests[i][:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return spiffeid.ID{}, fmt.Errorf("%w: not a bootstrap token of this issuer", ErrInvalidToken)
	}
	return t.ids[match], nil
}

func loadTokenFile(path string, td spiffeid.TrustDomain) (*tokenTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: bootstrap token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("issuer: bootstrap token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("issuer: %w: %s is not a regular file", ErrTokenFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("issuer: %w: %s has mode %04o, readable or writable by group or others; run chmod 600 %s",
			ErrTokenFile, path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("issuer: bootstrap token file: %w", err)
	}
	defer clear(data)
	t, err := parseTokenFile(data, td)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w: %s:%w", ErrTokenFile, path, err)
	}
	return t, nil
}

// parseTokenFile parses the format documented on TokenFileAuthenticator.
// Errors start with the line number and never include the token.
func parseTokenFile(data []byte, td spiffeid.TrustDomain) (*tokenTable, error) {
	t := &tokenTable{}
	seen := make(map[[sha256.Size]byte]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxTokenLen+4096)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%d: has %d fields; want \"<identity> <token>\"", n, len(fields))
		}
		id, err := parseTokenIdentity(fields[0], td)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", n, err)
		}
		tok := fields[1]
		if len(tok) < MinBootstrapTokenLen || len(tok) > MaxTokenLen {
			return nil, fmt.Errorf("%d: the token for %s is %d bytes; it must be %d to %d (use issuer.GenerateToken)",
				n, id, len(tok), MinBootstrapTokenLen, MaxTokenLen)
		}
		d := sha256.Sum256([]byte(tok))
		if prev, dup := seen[d]; dup {
			return nil, fmt.Errorf("%d: the token for %s is the same as the token on line %d; every token must be unique", n, id, prev)
		}
		seen[d] = n
		t.digests = append(t.digests, d)
		t.ids = append(t.ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf(" reading: %w", err)
	}
	return t, nil
}

func parseTokenIdentity(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if strings.HasPrefix(s, "spiffe://") {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("identity %q is not a SPIFFE ID: %w", s, err)
		}
		if !id.MemberOf(td) {
			return spiffeid.ID{}, fmt.Errorf("identity %q is not in trust domain %q", s, td.Name())
		}
		if id.Path() == "" {
			return spiffeid.ID{}, fmt.Errorf("identity %q has no path; a workload identity needs one", s)
		}
		return id, nil
	}
	ns, sa, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(sa, "/") {
		return spiffeid.ID{}, fmt.Errorf("identity %q is neither spiffe://%s/<path> nor <namespace>/<service-account>", s, td.Name())
	}
	id, err := trust.WorkloadID(td, ns, sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return id, nil
}

// GenerateToken returns a new bootstrap token: 32 bytes from r (nil means
// crypto/rand), base64url without padding (43 characters).
func GenerateToken(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("issuer: generating a bootstrap token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// WriteTokenFile writes entries in the token file format to path, mode
// 0600, replacing it atomically. Identities are written as full SPIFFE IDs.
func WriteTokenFile(path string, entries []TokenEntry) (err error) {
	var buf bytes.Buffer
	defer func() { clear(buf.Bytes()) }()
	buf.WriteString("# Causeway bootstrap tokens: <identity> <token>. Keep this file mode 0600.\n")
	for i, e := range entries {
		if e.ID.IsZero() {
			return fmt.Errorf("issuer: WriteTokenFile: entries[%d].ID is empty", i)
		}
		if len(e.Token) < MinBootstrapTokenLen || strings.ContainsAny(e.Token, " \t\r\n#") {
			return fmt.Errorf("issuer: WriteTokenFile: entries[%d] (%s): token is shorter than %d bytes or contains whitespace or '#'",
				i, e.ID, MinBootstrapTokenLen)
		}
		buf.WriteString(e.ID.String())
		buf.WriteByte(' ')
		buf.WriteString(e.Token)
		buf.WriteByte('\n')
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	if _, err = f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("issuer: writing %s: %w", path, err)
	}
	return nil
}
