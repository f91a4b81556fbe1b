package bundles

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/causewaymesh/causeway/trust"
)

func TestRotationWithOverlap(t *testing.T) {
	clk := &manualNow{t: t0}
	ca1 := mustCA(t, tdLocal, clk.Now)
	a := mustAuthority(t, ca1, AuthorityOptions{Now: clk.Now, PublishLead: time.Hour, RefreshHint: 5 * time.Minute})
	set := mustSet(t, a)
	wake, cancel := set.Subscribe()
	defer cancel()
	id := spiffeid.RequireFromPath(tdLocal, "/ns/shop/sa/cart")

	seq0 := a.Sequence()
	if want := uint64(t0.Unix()); seq0 != want {
		t.Fatalf("initial sequence %d, want Unix seconds %d", seq0, want)
	}
	issue := func(ttl time.Duration) *x509svid.SVID {
		t.Helper()
		s, err := a.IssueSVID(id, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	verifies := func(s *x509svid.SVID) error {
		_, _, err := x509svid.Verify(s.Certificates, set, x509svid.WithTime(clk.Now()))
		return err
	}
	states := func() string {
		var b strings.Builder
		for _, c := range a.Snapshot().CAs {
			b.WriteString(c.State.String() + " ")
		}
		return strings.TrimSpace(b.String())
	}

	old := issue(6 * time.Hour) // NotAfter t0+6h
	clk.Advance(time.Hour)
	oldShort := issue(2 * time.Hour) // t0+3h: the max stays t0+6h

	ca2 := mustCA(t, tdLocal, clk.Now)
	if err := a.Prepare(ca2); err != nil {
		t.Fatal(err)
	}
	seq1 := a.Sequence()
	if seq1 <= seq0 {
		t.Fatalf("Prepare: sequence %d did not increase from %d", seq1, seq0)
	}
	select {
	case <-wake:
	default:
		t.Fatal("Prepare did not wake the set's subscriber")
	}
	if got := states(); got != "active prepared" {
		t.Fatalf("states after Prepare: %q", got)
	}
	if n := len(a.Bundle().X509Authorities()); n != 2 {
		t.Fatalf("bundle after Prepare has %d roots, want 2", n)
	}
	// The prepared CA does not sign.
	if err := issue(time.Hour).Certificates[0].CheckSignatureFrom(ca1.Certificate()); err != nil {
		t.Fatalf("SVID issued while a CA is prepared was not signed by the active CA: %v", err)
	}

	// Publish lead: refused until a full hour has passed.
	for _, step := range []time.Duration{0, 59 * time.Minute} {
		clk.Advance(step)
		err := a.Activate()
		if !errors.Is(err, ErrPublishLead) {
			t.Fatalf("Activate after %v: %v, want ErrPublishLead", step, err)
		}
		for _, want := range []string{trust.Fingerprint(ca2.Certificate()), "PublishLead is 1h0m0s", "ForceActivate"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("Activate error %q does not mention %q", err, want)
			}
		}
	}
	clk.Advance(time.Minute) // t0+2h
	if err := a.Activate(); err != nil {
		t.Fatalf("Activate after the publish lead: %v", err)
	}
	if a.Sequence() != seq1 {
		t.Fatalf("Activate changed the sequence %d -> %d though no root changed", seq1, a.Sequence())
	}
	if got := states(); got != "retired active" {
		t.Fatalf("states after Activate: %q", got)
	}
	newSVID := issue(time.Hour)
	if err := newSVID.Certificates[0].CheckSignatureFrom(ca2.Certificate()); err != nil {
		t.Fatalf("SVID after Activate not signed by the new CA: %v", err)
	}
	snap := a.Snapshot()
	if got, want := snap.CAs[0].LastNotAfter, old.Certificates[0].NotAfter; !got.Equal(want) {
		t.Fatalf("retired CA LastNotAfter %v, want %v (the latest SVID it signed)", got, want)
	}

	tests := []struct {
		at          time.Duration // since t0
		wantRemoved int
		wantRoots   int
	}{
		{at: 3 * time.Hour, wantRemoved: 0, wantRoots: 2},
		{at: 6*time.Hour - time.Second, wantRemoved: 0, wantRoots: 2},
		{at: 6 * time.Hour, wantRemoved: 1, wantRoots: 1},
	}
	for _, tc := range tests {
		clk.Advance(tc.at - clk.Now().Sub(t0))
		if err := verifies(newSVID); err != nil && tc.at < 3*time.Hour {
			t.Fatalf("new SVID at t0+%v: %v", tc.at, err)
		}
		if tc.at < 6*time.Hour {
			if err := verifies(old); err != nil {
				t.Fatalf("old SVID at t0+%v (before Prune): %v", tc.at, err)
			}
		}
		before := a.Sequence()
		removed := a.Prune(clk.Now())
		if len(removed) != tc.wantRemoved {
			t.Fatalf("Prune at t0+%v removed %d, want %d", tc.at, len(removed), tc.wantRemoved)
		}
		if n := len(a.Bundle().X509Authorities()); n != tc.wantRoots {
			t.Fatalf("bundle at t0+%v has %d roots, want %d", tc.at, n, tc.wantRoots)
		}
		if tc.wantRemoved > 0 {
			if a.Sequence() <= before {
				t.Fatal("Prune removed a root without raising the sequence")
			}
			if removed[0].CA != ca1 || removed[0].State != CARetired {
				t.Fatalf("Prune removed %+v, want the retired ca1", removed[0])
			}
		} else if tc.at < 6*time.Hour {
			if err := verifies(old); err != nil {
				t.Fatalf("old SVID at t0+%v after Prune: %v", tc.at, err)
			}
		}
	}
	_ = oldShort
	// After pruning, an SVID of the new CA verifies, and one of the old root
	// does not (its root left the bundle).
	fresh := issue(time.Hour)
	if err := verifies(fresh); err != nil {
		t.Fatalf("new SVID after Prune: %v", err)
	}
	if _, _, err := x509svid.Verify(oldShort.Certificates, set, x509svid.WithTime(t0.Add(90*time.Minute))); err == nil {
		t.Fatal("an SVID of the pruned root still verifies")
	}
}

func TestAuthorityErrors(t *testing.T) {
	clk := &manualNow{t: t0}
	ca1 := mustCA(t, tdLocal, clk.Now)
	tests := []struct {
		name    string
		run     func(a *Authority) error
		wantIs  error
		wantMsg string
	}{
		{name: "activate with nothing prepared", run: func(a *Authority) error { return a.Activate() }, wantIs: ErrNothingPrepared, wantMsg: "call Prepare first"},
		{name: "prepare another trust domain", run: func(a *Authority) error { return a.Prepare(mustCA(t, tdOther, clk.Now)) }, wantIs: ErrWrongTrustDomain, wantMsg: `"other.test"`},
		{name: "prepare the active CA again", run: func(a *Authority) error { return a.Prepare(ca1) }, wantIs: ErrDuplicateCA, wantMsg: "is active"},
		{name: "prepare twice", run: func(a *Authority) error {
			if err := a.Prepare(mustCA(t, tdLocal, clk.Now)); err != nil {
				return err
			}
			return a.Prepare(mustCA(t, tdLocal, clk.Now))
		}, wantIs: ErrAlreadyPrepared, wantMsg: "Activate it"},
		{name: "prepare an expired CA", run: func(a *Authority) error {
			past := func() time.Time { return t0.Add(-400 * 24 * time.Hour) }
			return a.Prepare(mustCA(t, tdLocal, past))
		}, wantIs: trust.ErrCAExpired, wantMsg: "not at"},
		{name: "force activate skips the lead", run: func(a *Authority) error {
			if err := a.Prepare(mustCA(t, tdLocal, clk.Now)); err != nil {
				return err
			}
			return a.ForceActivate()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAuthority(t, ca1, AuthorityOptions{Now: clk.Now})
			err := tc.run(a)
			if tc.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v; want errors.Is %v and text %q", err, tc.wantIs, tc.wantMsg)
			}
		})
	}
}

func TestNewAuthorityOptions(t *testing.T) {
	ca := mustCA(t, tdLocal, nil)
	tests := []struct {
		name    string
		opts    AuthorityOptions
		wantErr string
	}{
		{name: "defaults", opts: AuthorityOptions{}},
		{name: "lead not above hint", opts: AuthorityOptions{PublishLead: time.Minute, RefreshHint: time.Minute}, wantErr: "PublishLead 1m0s must exceed RefreshHint 1m0s"},
		{name: "sub-second hint", opts: AuthorityOptions{RefreshHint: time.Millisecond}, wantErr: "at least 1s"},
		{name: "initial sequence", opts: AuthorityOptions{InitialSequence: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthority(ca, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.opts.InitialSequence != 0 && a.Sequence() != tc.opts.InitialSequence {
				t.Fatalf("sequence %d, want %d", a.Sequence(), tc.opts.InitialSequence)
			}
			if h, _ := a.Bundle().RefreshHint(); h != DefaultRefreshHint && tc.opts.RefreshHint == 0 {
				t.Fatalf("refresh hint %v, want %v", h, DefaultRefreshHint)
			}
		})
	}
	if _, err := NewAuthority(nil, AuthorityOptions{}); err == nil {
		t.Fatal("NewAuthority(nil) succeeded")
	}
}

// TestSignDuringRotation runs signers against Prepare/Activate/Prune under
// -race: every SVID must verify against the bundle right after it is issued.
func TestSignDuringRotation(t *testing.T) {
	clk := &manualNow{t: t0}
	a := mustAuthority(t, mustCA(t, tdLocal, clk.Now), AuthorityOptions{Now: clk.Now})
	id := spiffeid.RequireFromPath(tdLocal, "/ns/a/sa/b")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				s, err := a.IssueSVID(id, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := x509svid.Verify(s.Certificates, a, x509svid.WithTime(clk.Now())); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 3 {
		if err := a.Prepare(mustCA(t, tdLocal, clk.Now)); err != nil {
			t.Fatal(err)
		}
		if err := a.ForceActivate(); err != nil {
			t.Fatal(err)
		}
		a.Prune(clk.Now())
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestControlPlaneID(t *testing.T) {
	if got := ControlPlaneID(tdLocal).String(); got != "spiffe://local.test/causeway/control-plane" {
		t.Fatalf("ControlPlaneID = %s", got)
	}
	if !ControlPlaneID(spiffeid.TrustDomain{}).IsZero() {
		t.Fatal("ControlPlaneID of the zero trust domain is not zero")
	}
}
